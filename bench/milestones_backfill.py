"""Backfill benchmark: one milestone definition evaluated from 10,000,000 stored events.

Generates customers and events set-based in PostgreSQL (``INSERT … SELECT generate_series``,
events interleaved in time as real traffic is, so one customer's events are spread over the
table), then activates each benchmark milestone and runs its backfill in this process, the
way a worker runs the ``milestones.backfill_run`` task. Prints per milestone: wall time,
events in the table per second, progress rows and outcomes written, the method used, and
the peak RSS of this process. Plain script, not a test:

    .venv/bin/python bench/milestones_backfill.py

It uses its own database, BENCH_DATABASE_URL (default milepost_bench_backfill on the local
server), which it DROPS, recreates and drops again at the end (``--keep`` keeps it);
DATABASE_URL is ignored so a real database is never touched. Knobs: --events, --customers,
--milestones (comma-separated: second_purchase, spent_100, weekly_reports).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/milepost_bench_backfill"
TARGET_SECONDS = 60.0
TARGET_RSS_MB = 250.0

#: The benchmark milestones: realistic definitions of the kinds the SQL path compiles.
MILESTONES: dict[str, dict[str, Any]] = {
    "second_purchase": {
        "name": "Second purchase within 45 days of signup",
        "kind": "value",
        "condition": {"type": "event_count", "event": "Order Completed", "at_least": 2},
        "window": dt.timedelta(days=45),
    },
    "spent_100": {
        "name": "Spent $100 in 30 days",
        "kind": "value",
        "condition": {
            "type": "property_sum",
            "event": "Order Completed",
            "property": "amount",
            "at_least": 100,
            "within": {"days": 30},
            "where": [{"property": "currency", "op": "eq", "value": "USD"}],
        },
    },
    "weekly_reports": {
        "name": "Reports on 5 days and 20 reports",
        "kind": "habit",
        "condition": {
            "type": "all",
            "conditions": [
                {"type": "distinct_days", "event": "Report Created", "days": 5},
                {"type": "event_count", "event": "Report Created", "at_least": 20},
            ],
        },
    },
}

# Event mix: (name, share in percent, properties as SQL over the series value ``g``).
_MIX = (
    ("Page Viewed", 45, "jsonb_build_object('path', '/app/' || (g %% 40))"),
    (
        "Report Created",
        30,
        "jsonb_build_object('report_type', (ARRAY['funnel','cohort'])[g %% 2 + 1])",
    ),
    (
        "Order Completed",
        15,
        "jsonb_build_object('amount', round((random() * 120)::numeric, 2),"
        " 'currency', CASE WHEN g %% 10 = 0 THEN 'EUR' ELSE 'USD' END)",
    ),
    ("Feature Used", 10, "jsonb_build_object('feature', (ARRAY['export','share'])[g %% 2 + 1])"),
)
_ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "")


def _setup_database(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True
    )
    import django

    django.setup()


def _drop_database(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _generate(events: int, customers: int, now: dt.datetime) -> float:
    """Customers who signed up over the last 120 days, and their events from signup to now
    in time order, in a handful of set-based statements. Returns seconds taken."""
    from django.db import connection

    from customers.models import Customer, Event, Source

    started = time.monotonic()
    source = Source.objects.create(name="bench", key_prefix="mpw_bench", key_hash="x" * 64)
    event_table, customer_table = Event._meta.db_table, Customer._meta.db_table
    zones = "ARRAY[" + ", ".join(f"'{z}'" for z in _ZONES) + "]"
    names = "ARRAY[" + ", ".join(f"'{n}'" for n, _, _ in _MIX) + "]"
    cases = []
    bound = 0
    for index, (_, share, _properties) in enumerate(_MIX):
        bound += share
        cases.append(f"WHEN p < {bound} THEN {index + 1}")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
INSERT INTO {customer_table} (external_id, email, phone, time_zone, locale, plan, region,
    status, lifecycle_stage, traits, created_at, updated_at, first_seen, last_seen)
SELECT 'user-' || g, 'user' || g || '@example.com', '', ({zones})[g %% {len(_ZONES)} + 1], 'en',
       (ARRAY['free','pro','trial'])[g %% 3 + 1], 'us', 'active', 'new', '{{}}',
       %(now)s - (random() * interval '120 days'), %(now)s, NULL, NULL
FROM generate_series(1, %(customers)s) AS g
""",
            {"now": now, "customers": customers},
        )
        cursor.execute(f"SELECT min(id), max(id) FROM {customer_table}")
        low, high = cursor.fetchone()
        # Inserting without the indexes and building them afterwards is the fast way in.
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
            " AND indexname NOT LIKE '%%pkey'",
            [event_table],
        )
        found = cursor.fetchall()
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'",
            [event_table],
        )
        constraints = [row[0] for row in cursor.fetchall()]
        indexes = [(name, sql) for name, sql in found if name not in constraints]
        for name in constraints:
            cursor.execute(f'ALTER TABLE {event_table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
        choose = " ".join(cases)
        props = " ".join(f"WHEN {i + 1} THEN {p}" for i, (_, _, p) in enumerate(_MIX))
        cursor.execute(
            f"""
INSERT INTO {event_table} (source_id, message_id, customer_id, account_id, type, name,
    properties, context, occurred_at, received_at)
SELECT %(source)s, 'm-' || x.g, x.customer_id, NULL, 'track', ({names})[x.kind],
       CASE x.kind {props} END, '{{"library": {{"name": "analytics-node"}}}}'::jsonb,
       x.occurred_at, x.occurred_at
FROM (
    SELECT s.g, c.id AS customer_id,
           c.created_at + random() * (%(now)s - c.created_at) AS occurred_at,
           CASE {choose} ELSE {len(_MIX)} END AS kind
    FROM (SELECT g, {low} + floor(power(random(), 1.5) * {high - low + 1})::bigint AS customer_id,
                 (g * 37) %% 100 AS p
          FROM generate_series(1, %(events)s) AS g) s
    JOIN {customer_table} c ON c.id = s.customer_id
) x
ORDER BY x.occurred_at
""",
            {"source": source.pk, "now": now, "events": events},
        )
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            cursor.execute(definition)
        for name in constraints:
            cursor.execute(
                f'ALTER TABLE {event_table} ADD CONSTRAINT "{name}" UNIQUE (source_id, message_id)'
            )
    from django.db import connection as plain

    plain.close()
    with plain.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {event_table}")
        cursor.execute(f"VACUUM ANALYZE {customer_table}")
    return time.monotonic() - started


def _activate(key: str, fields: dict[str, Any]) -> int:
    """Create and activate the milestone; returns the backfill the activation queued."""
    from milestones.services import definition_activate, definition_create

    with mock.patch("milestones.tasks.backfill_run_task.delay"):
        definition = definition_create(key=key, **fields)
        return definition_activate(definition=definition).backfill.pk


def _run(key: str, backfill_id: int, events: int) -> dict[str, Any]:
    from milestones.backfill import backfill_run
    from milestones.models import MilestoneOutcome, Progress

    started = time.monotonic()
    backfill = backfill_run(backfill_id=backfill_id)
    seconds = time.monotonic() - started
    rows = Progress.objects.filter(version_id=backfill.version_id).count()
    outcomes = MilestoneOutcome.objects.filter(version_id=backfill.version_id).count()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "milestone": key,
        "method": backfill.method,
        "seconds": round(seconds, 2),
        "events_per_second": round(events / seconds),
        "subjects": backfill.processed,
        "progress_rows": rows,
        "outcomes": outcomes,
        "achieved": backfill.achieved,
        "missed": backfill.missed,
        "peak_rss_mb": round(rss_mb, 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--milestones", default=",".join(MILESTONES))
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    options = parser.parse_args(argv)
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    _setup_database(url)
    results = []
    try:
        now = dt.datetime.now(dt.UTC)
        seconds = _generate(options.events, options.customers, now)
        print(
            f"generated {options.events:,} events for {options.customers:,} customers"
            f" in {seconds:.1f} s"
        )
        for key in options.milestones.split(","):
            result = _run(key, _activate(key, MILESTONES[key]), options.events)
            results.append(result)
            verdict = "meets" if result["seconds"] <= TARGET_SECONDS else "MISSES"
            print(
                f"{key}: {result['seconds']:.1f} s ({verdict} the {TARGET_SECONDS:.0f} s target),"
                f" {result['events_per_second']:,} events/s, method {result['method']},"
                f" {result['progress_rows']:,} progress rows, {result['outcomes']:,} outcomes"
                f" ({result['achieved']:,} achieved, {result['missed']:,} missed),"
                f" peak RSS {result['peak_rss_mb']:.0f} MB (target {TARGET_RSS_MB:.0f} MB)"
            )
    finally:
        if not options.keep:
            _drop_database(url)
    return results


if __name__ == "__main__":
    main()
