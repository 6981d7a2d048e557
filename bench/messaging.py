"""Messaging benchmark: messages through the delivery policy + rendering + a null backend.

Setup (own database, dropped and recreated): customers with an email address, a phone and a
push token; explicit consent for some, opt-outs for others, opt-in regions, suppressed
addresses, a marketing cap of 3 per 7 days plus a per-channel cap, and one active template
per channel. Then ``--processes`` worker processes (2 by default) each take every
``--processes``-th batch of requests and, per batch, call ``messages_request`` (lock, snapshot,
policy, render, insert) and ``messages_send`` on what was queued (claim, null backend,
record). The requests of different processes hit the same customers, so the caps are
contended. Afterwards the database is checked: no customer holds more slots in a window than
a cap allows, and no suppressed address or withdrawn consent was sent to.

Target on the 2-core machine: >= 5,000 messages/s (under 1,500/s is a defect), zero cap
violations. Database: BENCH_DATABASE_URL (default milepost_bench_messaging on the local
server), DROPPED and recreated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/milepost_bench_messaging"
TARGET = 5_000
DEFECT = 1_500
CAP = 3
CHANNELS = ("email", "sms", "push", "in_app")
TEMPLATES = {
    "email": {
        "subject": "{{ customer.first_name | default('Hi') }}, your weekly tips",
        "preheader": "Three things to try",
        "html": "<h1>Hi {{ customer.first_name | default('there') }}</h1>"
        "<p>You are on the {{ customer.plan }} plan.</p>"
        '<p><a href="https://example.com/tips/1">Tip one</a> · '
        '<a href="https://example.com/tips/2">Tip two</a></p>'
        '<p><a href="{{ links.unsubscribe }}" data-notrack>Unsubscribe</a></p>',
        "text": "",
    },
    "sms": {"body": "{{ customer.first_name | default('Hi') }}: 3 new tips. Reply STOP to opt out"},
    "push": {
        "title": "Weekly tips",
        "body": "3 tips for {{ customer.plan }}",
        "deep_link": "app://tips",
        "data": {"kind": "tips"},
    },
    "in_app": {
        "title": "Weekly tips",
        "body": "Open for 3 tips",
        "cta_label": "Open",
        "cta_url": "app://tips",
    },
}


def _environment(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/8"),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "MESSAGING_BACKENDS": json.dumps(
            dict.fromkeys(CHANNELS, "messaging.channels.null.NullBackend")
        ),
    }


def _django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def _database_create(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        check=True,
        env=os.environ,
    )


def _setup(customers: int, seed: int) -> None:
    """Customers, consent, suppressions, caps and templates, set-based where it counts."""
    import datetime as dt

    from django.db import connection

    from consent.models import RegionPolicy, Subscription, Suppression, Topic
    from consent.services import address_hash
    from messaging.models import FrequencyCap
    from messaging.templating import template_activate, template_save

    rng = random.Random(seed)
    tips = Topic.objects.get(key="marketing")
    RegionPolicy.objects.get_or_create(region="DE", defaults={"mode": "opt_in"})
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO customers_customer (external_id, email, phone, time_zone, locale, plan, "
            "region, status, lifecycle_stage, traits, created_at, updated_at) "
            "SELECT 'm-' || g, 'user' || g || '@example.com', '+1415' || lpad(g::text, 7, '0'), "
            "(ARRAY['UTC','Europe/Berlin','America/New_York','Asia/Tokyo'])[1 + g %% 4], 'en', "
            "'pro', CASE WHEN g %% 10 = 0 THEN 'DE' ELSE 'US' END, 'active', 'active', "
            "jsonb_build_object('first_name', 'User' || g), now(), now() "
            "FROM generate_series(1, %s) g",
            [customers],
        )
        cursor.execute(
            "INSERT INTO customers_device (customer_id, platform, token, is_active, created_at, "
            "last_seen) SELECT id, 'ios', 'tok-' || id, true, now(), now() "
            "FROM customers_customer"
        )
    ids = list(range(1, customers + 1))
    subscriptions = []
    for pk in rng.sample(ids, customers // 5):  # a fifth opted in to email (incl. DE ones)
        subscriptions.append(
            Subscription(customer_id=pk, channel="email", topic=tips, status="opted_in")
        )
    for pk in rng.sample(ids, customers // 10):  # a tenth opted out of push
        subscriptions.append(
            Subscription(customer_id=pk, channel="push", topic=tips, status="opted_out")
        )
    Subscription.objects.bulk_create(subscriptions, ignore_conflicts=True)
    Suppression.objects.bulk_create(
        [
            Suppression(
                kind="email",
                address_hash=address_hash("email", f"user{pk}@example.com"),
                address=f"user{pk}@example.com",
                reason="hard_bounce",
            )
            for pk in rng.sample(ids, customers // 20)
        ]
    )
    FrequencyCap.objects.create(
        name="3 a week", scope="marketing", limit=CAP, window=dt.timedelta(days=7)
    )
    FrequencyCap.objects.create(
        name="1 SMS a day", scope="channel", channel="sms", limit=1, window=dt.timedelta(days=1)
    )
    from consent.models import QuietHours

    QuietHours.objects.all().delete()  # measure sends, not deferrals
    for channel, fields in TEMPLATES.items():
        template = template_save(
            key=f"tips-{channel}", name=f"Tips {channel}", channel=channel, topic=tips,
            default_locale="en", variants={"en": fields},
        )  # fmt: skip
        template_activate(template_id=template.pk)


def _requests(
    customers: int, per_customer: int, batch: int, seed: int, index: int, processes: int
) -> list[list[tuple[str, int, tuple[str, ...], int]]]:
    """This process's batches of (key, customer, templates, priority). Every process walks
    the same blocks of customers in the same order and takes its share of each customer's
    requests, so the processes contend for the same customers' cap slots at the same time."""
    rng = random.Random(seed)
    orders = [
        ("tips-push", "tips-email", "tips-sms"),
        ("tips-email",),
        ("tips-sms", "tips-email"),
        ("tips-in_app",),
    ]
    block = max(1, batch * processes // per_customer)
    batches = []
    for first in range(1, customers + 1, block):
        items = [
            (f"bench-{pk}-{n}", pk, rng.choice(orders), rng.randint(0, 3))
            for pk in range(first, min(first + block, customers + 1))
            for n in range(per_customer)
        ]
        batches.append([item for i, item in enumerate(items) if i % processes == index])
    return batches


def _child(args: argparse.Namespace) -> None:
    _django(_environment(args.database_url))
    from django.db import connections

    from messaging.models import Message
    from messaging.sending import messages_send
    from messaging.services import SendRequest, messages_request

    batches = _requests(
        args.customers, args.per_customer, args.batch, args.seed, args.index, args.processes
    )
    decided = sent = 0
    started = time.perf_counter()
    for batch in batches:
        ids = messages_request(
            [SendRequest(key, pk, templates, priority) for key, pk, templates, priority in batch]
        )
        decided += len(ids)
        queued = Message.objects.filter(pk__in=ids, status="queued").values_list("channel", "pk")
        by_channel: dict[str, list[int]] = {}
        for channel, pk in queued:
            by_channel.setdefault(channel, []).append(pk)
        for channel, pks in by_channel.items():
            sent += messages_send(channel, pks).sent
    seconds = time.perf_counter() - started
    connections.close_all()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"decided": decided, "sent": sent, "seconds": seconds, "rss_mb": rss}))


def _violations() -> dict[str, int]:
    from django.db import connection

    sent = "m.status IN ('queued', 'sending', 'sent')"
    checks = {
        # More slot-holding marketing messages than a cap allows (all within one window).
        "cap (3 marketing / 7 days)": f"""
            SELECT count(*) FROM (SELECT customer_id FROM messaging_message
            WHERE reserved_at IS NOT NULL GROUP BY customer_id HAVING count(*) > {CAP}) t""",
        "cap (1 SMS / day)": """
            SELECT count(*) FROM (SELECT customer_id FROM messaging_message
            WHERE reserved_at IS NOT NULL AND channel = 'sms'
            GROUP BY customer_id HAVING count(*) > 1) t""",
        "sent to a suppressed address": f"""
            SELECT count(*) FROM messaging_message m JOIN consent_suppression s
            ON s.kind = 'email' AND s.address = m.to_address
            WHERE m.channel = 'email' AND {sent}""",
        "sent against an opt-out": f"""
            SELECT count(*) FROM messaging_message m JOIN consent_subscription s
            ON s.customer_id = m.customer_id AND s.channel = m.channel AND s.topic_id = m.topic_id
            WHERE s.status = 'opted_out' AND {sent}""",
        "email in an opt-in region without opt-in": f"""
            SELECT count(*) FROM messaging_message m
            JOIN customers_customer c ON c.id = m.customer_id
            LEFT JOIN consent_subscription s ON s.customer_id = m.customer_id
                AND s.channel = 'email' AND s.topic_id = m.topic_id
            WHERE c.region = 'DE' AND m.channel = 'email' AND {sent}
            AND coalesce(s.status, 'unknown') <> 'opted_in'""",
    }
    found = {}
    with connection.cursor() as cursor:
        for name, sql in checks.items():
            cursor.execute(sql)
            found[name] = int(cursor.fetchone()[0])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--per-customer", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    os.environ.update(_environment(args.database_url))
    started = time.perf_counter()
    _database_create(args.database_url)
    _django(_environment(args.database_url))
    _setup(args.customers, args.seed)
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connections.close_all()
    total = args.customers * args.per_customer
    print(
        f"setup: {args.customers:,} customers, {total:,} send requests in batches of {args.batch} "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    base = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--database-url",
        args.database_url,
    ]
    base += ["--customers", str(args.customers), "--per-customer", str(args.per_customer)]
    base += [
        "--batch",
        str(args.batch),
        "--processes",
        str(args.processes),
        "--seed",
        str(args.seed),
    ]
    wall = time.perf_counter()
    children = [
        subprocess.Popen([*base, "--index", str(i)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for i in range(args.processes)
    ]
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"worker failed ({child.returncode}): {out[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = time.perf_counter() - wall
    decided = sum(r["decided"] for r in results)
    rate = decided / seconds
    verdict = "target met" if rate >= TARGET else ("DEFECT" if rate < DEFECT else "target MISSED")
    print(
        f"policy + render + null backend, {args.processes} processes: {decided:,} messages in "
        f"{seconds:.1f} s = {rate:,.0f} messages/s ({verdict}; target {TARGET:,}, defect under "
        f"{DEFECT:,}); sent {sum(r['sent'] for r in results):,}; peak RSS "
        f"{', '.join(str(round(r['rss_mb'])) for r in results)} MB",
        flush=True,
    )
    from django.db.models import Count

    from messaging.models import Message

    by_status = dict(
        Message.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    by_reason = dict(
        Message.objects.exclude(reason="")
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    print(f"  outcomes by status: {json.dumps(by_status, sort_keys=True)}")
    print(f"  not sent, by reason: {json.dumps(by_reason, sort_keys=True)}")
    violations = _violations()
    print(
        f"  correctness under {args.processes} concurrent workers: "
        + ", ".join(f"{name}: {count}" for name, count in violations.items())
        + (" — zero violations" if not any(violations.values()) else " — VIOLATIONS")
    )


if __name__ == "__main__":
    main()
