"""Journeys benchmark: runner throughput, and latency from an event's POST to the channel.

Prints, on real PostgreSQL, Redis, Celery workers and gunicorn:

1. Runner throughput. ``--enrollments`` customers (set-based) are enrolled, due now, in a
   live two-step journey (send, then wait two days; bulk insert), once with an email send
   step and once with an SMS one (``--channels``). A Celery worker on the ``journeys``
   queue (``-c 2``, a fresh one per channel) runs ``journeys.enrollments_advance`` chains,
   one per pool process, that claim due enrollments in batches of
   ``JOURNEYS_ADVANCE_BATCH`` with ``SKIP LOCKED`` and hand each send to
   ``messages_request`` (policy, render, outbox row). Enrollments moved to ``waiting`` per
   second, from the first claim to the moment none is due, with the CPU
   split (worker, PostgreSQL, this script); then the database is checked: every enrollment
   waiting with exactly one message, no customer with two, one step run per enrollment
   linked to its message. The send tasks the batches queue are purged, not run: sending
   has its own benchmark (bench/messaging.py) and is part of 2.
2. Latency, end to end. Customers signed up through ingest; gunicorn as the README advises
   for 2 cores (3 gthread workers x 2 threads); by default one Celery worker on every queue
   with Celery's default concurrency, the core count (2), which is what the README's
   ``celery -A config worker -Q <queues>`` gives (``--latency-workers`` for other layouts).
   Events are POSTed at a fixed offered rate (open loop: a slow response does not delay the
   next POST), each by a customer whose first ``Bench Action`` achieves an ``event_count >=
   1`` milestone, whose outcome enrolls them in a journey whose first step sends an email
   that a null backend takes. Latency: the message's ``sent_at`` (recorded right after the
   backend returned) minus the wall-clock time the client started the POST; p50/p90/p99/max
   per load, and the median time each stage adds (event stored, outcome recorded, enrolled,
   message decided, claimed by a send task, sent).

Targets on a 2-core machine: >= 5,000 enrollments/s advanced (under 2,000/s is a defect);
POST to backend p50 <= 50 ms and p99 <= 250 ms at 100 events/s, p99 <= 2 s at 1,000
events/s (sent in /v1/batch calls of 10 by default: one /v1/track call per event costs
~3.8 ms of server time, so 1,000 single calls a second do not fit on 2 cores).

    .venv/bin/python bench/journeys.py [--enrollments 100000] [--seconds 25] [--skip-latency]

It uses its own database, BENCH_DATABASE_URL (default milepost_bench_journeys on the local
server), which it DROPS and recreates, and its own broker, BENCH_BROKER_URL (default
redis://127.0.0.1:6379/14), whose queues it purges; DATABASE_URL is ignored.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/milepost_bench_journeys"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"
BIN = Path(sys.executable).parent
CHANNELS = ("email", "sms", "push", "in_app")
ALL_QUEUES = "ingest,evaluate,journeys,messages.email,messages.sms,messages.push,maintenance"
TARGET_RATE = 5_000
DEFECT_RATE = 2_000
# events/s -> (p50, p99) targets in ms (None: no target)
LATENCY_TARGETS: dict[int, tuple[float | None, float]] = {100: (50.0, 250.0), 1000: (None, 2000.0)}
EVENT = "Bench Action"
MILESTONE = "first-action"
SEND_STEP = "welcome"
TEMPLATES: dict[str, dict[str, str]] = {
    "email": {
        "subject": "{{ customer.first_name | default('Hi') }}, welcome aboard",
        "preheader": "Three things to try first",
        "html": "<h1>Hi {{ customer.first_name | default('there') }}</h1>"
        "<p>You are on the {{ customer.plan }} plan.</p>"
        '<p><a href="https://example.com/start">Get started</a></p>'
        '<p><a href="{{ links.unsubscribe }}" data-notrack>Unsubscribe</a></p>',
        "text": "",
    },
    "sms": {"body": "{{ customer.first_name | default('Hi') }}: welcome! Reply STOP to opt out"},
}


# --- Environment --------------------------------------------------------------------------


def _environment(url: str, broker: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",  # DEBUG keeps every query in memory
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
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


def _sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []


def _scalar(statement: str, params: Any = None) -> Any:
    rows = _sql(statement, params)
    return rows[0][0] if rows else None


def _vacuum() -> None:
    """VACUUM ANALYZE the tables that hold rows, as autovacuum would have by now.

    An empty table is left alone, never analyzed, as a new installation's tables are (and
    as autovacuum leaves a table until 50 rows have changed). Analyzing it empty would
    record it as empty, and then every plan a connection caches while the table has a page
    or two is a sequential scan that the connection keeps as the run fills the table: at
    1,000 events/s the progress lookup alone cost 0.3 ms of PostgreSQL per event that way.
    A production table that big has statistics that say so.
    """
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    previous = raw.autocommit
    raw.autocommit = True
    try:
        tables = [
            name
            for (name,) in raw.execute(
                "SELECT quote_ident(relname) FROM pg_stat_user_tables ORDER BY relname"
            ).fetchall()
        ]
        for table in tables:
            if raw.execute(f"SELECT EXISTS (SELECT FROM {table})").fetchone()[0]:
                raw.execute(f"VACUUM ANALYZE {table}")
    finally:
        raw.autocommit = previous


def _purge_queues() -> int:
    from config.celery import app

    return int(app.control.purge() or 0)


def _celery_worker(
    args: argparse.Namespace, queues: str, concurrency: int, name: str = "w"
) -> subprocess.Popen[bytes]:
    command = [
        str(BIN / "celery"), "-A", "config", "worker", "-Q", queues,
        "-c", str(concurrency), "--pool", "prefork", "-l", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"bench-journeys-{name}-{os.getpid()}@%h",
    ]  # fmt: skip
    env = _environment(args.database_url, args.broker)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)  # the banner


def _worker_ready(count: int = 1, timeout: float = 60) -> None:
    """Block until ``count`` workers answer a ping (their pools are up)."""
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    raise RuntimeError("the Celery workers did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- /proc: CPU ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    found, frontier = [], _children(pid)
    while frontier:
        child = frontier.pop()
        found.append(child)
        frontier.extend(_children(child))
    return found


class CpuMeter:
    """CPU seconds of the processes this script started (workers, gunicorn) and of the
    PostgreSQL backends serving the benchmark's database, sampled every 0.1 s so processes
    that come and go are counted up to their last sample."""

    def __init__(self, database: str) -> None:
        self.marker = f" {database} ".encode()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuMeter:
        self.started = time.perf_counter()
        self.self_start = _used(resource.getrusage(resource.RUSAGE_SELF))
        self._sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(initial=False)
        totals = {"workers": 0.0, "postgres": 0.0}
        for (kind, pid), used in self.last.items():
            totals[kind] += used - self.first.get((kind, pid), 0.0)
        mine = _used(resource.getrusage(resource.RUSAGE_SELF)) - self.self_start
        self.seconds = {**totals, "bench": mine}
        self.wall = time.perf_counter() - self.started

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample(initial=False)

    def _sample(self, *, initial: bool) -> None:
        seen = [("workers", pid) for pid in _descendants(os.getpid())]
        for pid_text in filter(str.isdigit, os.listdir("/proc")):
            try:
                command = Path(f"/proc/{pid_text}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if command.startswith(b"postgres:") and self.marker in command:
                seen.append(("postgres", int(pid_text)))
        for key in seen:
            used = self._cpu(key[1])
            if used is None:
                continue
            if initial:
                self.first[key] = used
            self.last[key] = used

    def _cpu(self, pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick

    def report(self, per: int) -> str:
        parts = [
            f"{name} {used:.1f} s ({used / per * 1e6:.0f} µs each)"
            for name, used in self.seconds.items()
        ]
        return f"{'; '.join(parts)} over {self.wall:.1f} s wall (load average {_load_average()})"


def _used(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# --- Setup --------------------------------------------------------------------------------


def _setup() -> dict[str, int]:
    """Templates, the milestone and the live journeys; returns version ids by name: the
    latency journey (``latency``, triggered by the milestone) and one journey per channel
    for the runner (``email``, ``sms``; triggered by an event nobody sends)."""
    from consent.models import QuietHours, Topic
    from journeys.services import journey_go_live, journey_save
    from messaging.templating import template_activate, template_save
    from milestones.backfill import backfill_run
    from milestones.services import definition_activate, definition_create

    QuietHours.objects.all().delete()  # measure sends, not deferrals to the morning
    marketing = Topic.objects.get(key="marketing")
    for channel, variant in TEMPLATES.items():
        template = template_save(
            key=f"welcome-{channel}", name=f"Welcome ({channel})", channel=channel,
            topic=marketing, default_locale="en", variants={"en": variant},
        )  # fmt: skip
        template_activate(template_id=template.pk)
    definition = definition_create(
        key=MILESTONE, name="First action", kind="onboarding",
        condition={"type": "event_count", "event": EVENT, "at_least": 1},
    )  # fmt: skip
    backfill_run(backfill_id=definition_activate(definition=definition).backfill.pk)
    triggers = {
        "latency": ("email", {"kind": "milestone_achieved", "milestone": MILESTONE}),
        **{c: (c, {"kind": "event", "event": "Never Sent"}) for c in TEMPLATES},
    }
    versions = {}
    for name, (channel, trigger) in triggers.items():
        journey = journey_save(
            key=f"welcome-{name}", name=f"Welcome ({name})", steps=_steps(channel),
            trigger=trigger,
        )  # fmt: skip
        versions[name] = journey_go_live(journey_id=journey.pk).pk
    return versions


def _steps(channel: str) -> list[dict[str, Any]]:
    return [
        {"key": SEND_STEP, "type": "send", "templates": [f"welcome-{channel}"], "next": "pause"},
        {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
        {"key": "done", "type": "exit"},
    ]


def _customers_seed(count: int) -> None:
    """``count`` customers with an email address and a phone number (set-based)."""
    _sql(
        "INSERT INTO customers_customer (external_id, email, phone, time_zone, locale, plan, "
        "region, status, lifecycle_stage, traits, created_at, updated_at) "
        "SELECT 'adv-' || g, 'user' || g || '@example.com', '+1415' || lpad(g::text, 7, '0'), "
        "(ARRAY['UTC','Europe/Berlin','America/New_York','Asia/Tokyo'])[1 + g %% 4], 'en', "
        "'pro', 'US', 'active', 'active', jsonb_build_object('first_name', 'User' || g), "
        "now(), now() FROM generate_series(1, %s) g",
        [count],
    )


def _enrollments_seed(version_id: int) -> None:
    """Every seeded customer enrolled and due now at the send step (set-based)."""
    _sql("TRUNCATE journeys_steprun, journeys_enrollment, messaging_message CASCADE")
    _sql(
        "INSERT INTO journeys_enrollment (version_id, journey_id, customer_id, entry_key, state, "
        "current_step, next_run_at, step_started_at, variants, entered_at, exit_reason, "
        "updated_at) "
        "SELECT v.id, v.journey_id, c.id, 'bench:' || c.id, 'active', %s, now(), now(), '{}', "
        "now(), '', now() FROM customers_customer c, journeys_journeyversion v "
        "WHERE v.id = %s AND c.external_id LIKE 'adv-%%' ORDER BY c.id",
        [SEND_STEP, version_id],
    )


# --- 1. Runner throughput -----------------------------------------------------------------


def _due_left() -> bool:
    """Whether any enrollment is still due (the runner's own predicate and index)."""
    return bool(
        _scalar(
            "SELECT 1 FROM journeys_enrollment WHERE state IN ('active', 'waiting') "
            "AND next_run_at <= now() LIMIT 1"
        )
    )


def _advance(args: argparse.Namespace, versions: dict[str, int]) -> None:
    from django.conf import settings

    started = time.perf_counter()
    _customers_seed(args.enrollments)
    print(
        f"runner: {args.enrollments:,} customers (seeded in {time.perf_counter() - started:.1f} "
        f"s), each enrolled and due now in a live send + wait journey, once per channel; "
        f"batches of {settings.JOURNEYS_ADVANCE_BATCH}; one Celery worker -Q journeys -c "
        f"{args.concurrency}",
        flush=True,
    )
    for channel in args.channels:
        _advance_channel(args, channel, versions[channel])


def _advance_channel(args: argparse.Namespace, channel: str, version_id: int) -> None:
    from django.db import connections

    from journeys.tasks import enrollments_advance_task

    _enrollments_seed(version_id)
    _vacuum()
    _purge_queues()
    connections.close_all()
    # A fresh worker per channel: the seed truncates the tables, and a connection that
    # lived through that would keep plans made while they were empty (a production table
    # is never emptied under its workers).
    worker = _celery_worker(args, "journeys", args.concurrency)
    try:
        _worker_ready()
        with CpuMeter(_database_name(args)) as cpu:
            for _ in range(args.concurrency):  # one advancing chain per pool process
                enrollments_advance_task.delay()
            while _due_left():
                time.sleep(0.05)
            ended = time.time()
    finally:
        _stop(worker)
    first = float(_scalar("SELECT extract(epoch FROM min(at)) FROM journeys_steprun"))
    seconds = ended - first
    waiting = int(_scalar("SELECT count(*) FROM journeys_enrollment WHERE state = 'waiting'"))
    rate = waiting / seconds
    print(
        f"  send {channel} + wait: {waiting:,} enrollments moved to waiting in {seconds:.2f} s "
        f"= {rate:,.0f} enrollments/s ({_rate_verdict(rate)}; target {TARGET_RATE:,}, defect "
        f"under {DEFECT_RATE:,})",
        flush=True,
    )
    print(f"    CPU: {cpu.report(waiting)}", flush=True)
    statuses = dict(_sql("SELECT status, count(*) FROM messaging_message GROUP BY status"))
    print(
        f"    messages created: {sum(statuses.values()):,} (by status: "
        f"{json.dumps(statuses, sort_keys=True)})",
        flush=True,
    )
    violations = _advance_violations()
    print(
        "    correctness: "
        + ", ".join(f"{name}: {count}" for name, count in violations.items())
        + (" — zero violations" if not any(violations.values()) else " — VIOLATIONS"),
        flush=True,
    )
    _purge_queues()  # the send wake-ups the batches queued: sending is not measured here


def _advance_violations() -> dict[str, int]:
    key = f"'journey:' || e.id || ':{SEND_STEP}:1'"
    checks = {
        "enrollments not waiting at the wait step": """
            SELECT count(*) FROM journeys_enrollment
            WHERE state <> 'waiting' OR current_step <> 'pause'""",
        "enrollments without exactly one message": f"""
            SELECT count(*) FROM journeys_enrollment e
            LEFT JOIN (SELECT idempotency_key, customer_id, count(*) n FROM messaging_message
                       GROUP BY idempotency_key, customer_id) m
            ON m.idempotency_key = {key} AND m.customer_id = e.customer_id
            WHERE coalesce(m.n, 0) <> 1""",
        "customers with more than one message": """
            SELECT count(*) FROM (SELECT customer_id FROM messaging_message
            GROUP BY customer_id HAVING count(*) > 1) t""",
        "enrollments without exactly one step run linked to their message": """
            SELECT count(*) FROM journeys_enrollment e
            LEFT JOIN (SELECT r.enrollment_id, count(*) n FROM journeys_steprun r
                       JOIN messaging_message m ON m.id = r.message_id
                       AND m.idempotency_key = r.idempotency_key
                       GROUP BY r.enrollment_id) r ON r.enrollment_id = e.id
            WHERE coalesce(r.n, 0) <> 1 OR (SELECT count(*) FROM journeys_steprun x
                                            WHERE x.enrollment_id = e.id) <> 1""",
        "messages not decided (queued)": """
            SELECT count(*) FROM messaging_message WHERE status <> 'queued'""",
    }
    return {name: int(_scalar(sql)) for name, sql in checks.items()}


def _rate_verdict(rate: float) -> str:
    if rate >= TARGET_RATE:
        return "target met"
    return "DEFECT" if rate < DEFECT_RATE else "target MISSED"


def _database_name(args: argparse.Namespace) -> str:
    return str(args.database_url.rpartition("/")[2])


# --- 2. Latency ---------------------------------------------------------------------------


def _signups(prefix: str, count: int) -> None:
    """Customers who signed up through ingest (identify), as a live system has them."""
    from django.utils import timezone

    from customers.ingest.parsing import Limits, parse_batch
    from customers.ingest.service import events_ingest
    from customers.models import Source

    source_id = Source.objects.get(name="bench").pk
    signed_up = (timezone.now() - dt.timedelta(days=1)).isoformat()
    for first in range(0, count, 500):
        batch = [
            {
                "type": "identify", "userId": f"{prefix}-{n}", "messageId": f"signup-{prefix}-{n}",
                "timestamp": signed_up,
                "traits": {"email": f"{prefix}-{n}@bench.example", "plan": "pro",
                           "first_name": f"User{n}", "createdAt": signed_up},
            }
            for n in range(first, min(first + 500, count))
        ]  # fmt: skip
        received_at = timezone.now()
        parsed = parse_batch(orjson.dumps({"batch": batch}), received_at, Limits())
        events_ingest(source_id=source_id, messages=parsed.messages, received_at=received_at)


def _start_server(port: int) -> subprocess.Popen[bytes]:
    command = [
        str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "3", "--worker-class", "gthread", "--threads", "2",
        "--keep-alive", "75", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())
    for _ in range(100):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("gunicorn did not start")


class Poster:
    """Open-loop load: the ``i``-th POST (``per_post`` events: ``/v1/track`` for one,
    ``/v1/batch`` for more) goes at ``start + i * per_post / rate`` from whichever client
    thread is free, so a slow response never slows the offered rate. Each event's time is
    the wall-clock time its POST started."""

    def __init__(
        self, port: int, key: str, users: list[str], rate: float, clients: int, per_post: int = 1
    ) -> None:
        self.port, self.rate, self.clients, self.per_post = port, rate, clients, per_post
        self.posts = [users[i : i + per_post] for i in range(0, len(users), per_post)]
        self.auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        self.posted: dict[str, float] = {}
        self.response_ms: list[float] = []
        self.errors: list[str] = []
        self._next = 0
        self._lock = threading.Lock()

    def run(self) -> float:
        threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        self.start = time.perf_counter() + 0.2
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - self.start

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.posts):
                return None
            self._next += 1
            return self._next - 1

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        while (index := self._take()) is not None:
            pause = self.start + index * self.per_post / self.rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            users = self.posts[index]
            posted = time.time()
            path, body = _body(users, posted)
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(f"{users[0]}: {exc!r}")
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            self.response_ms.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                self.errors.append(f"{users[0]}: {response.status} {payload[:200]!r}")
                continue
            self.posted.update(dict.fromkeys(users, posted))


def _body(users: list[str], posted: float) -> tuple[str, bytes]:
    timestamp = dt.datetime.fromtimestamp(posted, dt.UTC).isoformat()
    events = [
        {"type": "track", "event": EVENT, "userId": user, "messageId": f"ev-{user}",
         "timestamp": timestamp, "properties": {"source": "bench"}}
        for user in users
    ]  # fmt: skip
    if len(events) == 1:
        return "/v1/track", orjson.dumps(events[0])
    return "/v1/batch", orjson.dumps({"batch": events})


def _sent_count(prefix: str) -> int:
    return int(
        _scalar(
            "SELECT count(*) FROM messaging_message m JOIN customers_customer c "
            "ON c.id = m.customer_id WHERE c.external_id LIKE %s AND m.sent_at IS NOT NULL",
            [f"{prefix}-%"],
        )
    )


def _wait_sent(prefix: str, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (found := _sent_count(prefix)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


_STAGES_SQL = """
SELECT c.external_id, extract(epoch FROM e.received_at), extract(epoch FROM o.recorded_at),
       extract(epoch FROM n.entered_at), extract(epoch FROM m.created_at),
       extract(epoch FROM m.claimed_at), extract(epoch FROM m.sent_at)
FROM customers_customer c
JOIN customers_event e ON e.customer_id = c.id AND e.name = %(event)s
LEFT JOIN milestones_milestoneoutcome o ON o.subject_id = c.id AND o.kind = 'achieved'
LEFT JOIN journeys_enrollment n ON n.customer_id = c.id
LEFT JOIN messaging_message m ON m.customer_id = c.id
WHERE c.external_id LIKE %(prefix)s
"""
# What each mark is: event stored (received_at), outcome recorded (the evaluation's start),
# enrolled, message decided (the runner batch's start), claimed by a send task, sent.
STAGES = ("stored", "outcome", "enrolled", "decided", "claimed", "sent")


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1]}


def _load(text: str) -> tuple[int, int]:
    """``RATE`` or ``RATExEVENTS_PER_POST``, e.g. ``1000x10``."""
    rate, _, per_post = text.partition("x")
    return int(rate), int(per_post or 1)


def _worker_spec(text: str) -> tuple[str, int]:
    """``QUEUES:CONCURRENCY``, e.g. ``evaluate,journeys:2``."""
    queues, _, concurrency = text.rpartition(":")
    return queues, int(concurrency)


def _latency_run(
    args: argparse.Namespace, key: str, rate: int, per_post: int, prefix: str
) -> dict[str, Any]:
    users = [f"{prefix}-{n}" for n in range(int(rate * args.seconds))]
    clients = max(4, min(64, rate // per_post // 10))
    poster = Poster(args.port, key, users, rate, clients, per_post)
    with CpuMeter(_database_name(args)) as cpu:
        posting = poster.run()
        sent = _wait_sent(prefix, len(poster.posted), timeout=args.drain_timeout)
    rows = _sql(_STAGES_SQL, {"event": EVENT, "prefix": f"{prefix}-%"})
    latencies: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for user, *marks in rows:
        posted = poster.posted.get(user)
        if posted is None or marks[-1] is None:
            continue
        latencies.append((float(marks[-1]) - posted) * 1000)
        times = [posted, *(float(mark) for mark in marks)]
        for name, before, after in zip(STAGES, times[:-1], times[1:], strict=True):
            stages[name].append((after - before) * 1000)
    return {
        "rate": rate, "per_post": per_post, "posted": len(poster.posted), "sent": sent,
        "errors": poster.errors, "posting": posting, "latencies": latencies, "stages": stages,
        "cpu": cpu, "response": poster.response_ms, "clients": clients,
    }  # fmt: skip


def _latency_print(result: dict[str, Any]) -> None:
    rate, per_post, latencies = result["rate"], result["per_post"], result["latencies"]
    how = "one event per POST to /v1/track" if per_post == 1 else f"{per_post} per /v1/batch"
    print(
        f"  {rate:,} events/s offered ({how}, {result['clients']} client threads): "
        f"{result['posted']:,} events POSTed in {result['posting']:.1f} s = "
        f"{result['posted'] / result['posting']:,.0f}/s; {result['sent']:,} messages handed to "
        f"the backend; {len(result['errors'])} failed POSTs",
        flush=True,
    )
    if result["errors"]:
        print(f"    first failure: {result['errors'][0]}", flush=True)
    if not latencies:
        print("    no message was sent: no latency", flush=True)
        return
    q = _quantiles(latencies)
    p50_target, p99_target = LATENCY_TARGETS.get(rate, (None, None))
    missing = result["posted"] - len(latencies)
    verdict = ""
    if p99_target is not None:
        met = not missing and q["p99"] <= p99_target and q["p50"] <= (p50_target or q["p50"])
        targets = (f"p50 <= {p50_target:g} ms, " if p50_target else "") + f"p99 <= {p99_target:g}"
        verdict = f" ({'target met' if met else 'target MISSED'}: {targets} ms)"
    print(
        f"    POST to backend: p50 {q['p50']:.0f} ms, p90 {q['p90']:.0f} ms, p99 {q['p99']:.0f} "
        f"ms, max {q['max']:.0f} ms over {len(latencies):,} events{verdict}"
        + (f"; {missing:,} events never reached the backend" if missing else ""),
        flush=True,
    )
    medians = ", ".join(
        f"{name} +{statistics.median(values):.1f}"
        for name, values in result["stages"].items()
        if values
    )
    response = _quantiles(result["response"])
    print(
        f"    median ms each stage adds: {medians}; POST response p50 {response['p50']:.1f} ms, "
        f"p99 {response['p99']:.1f} ms",
        flush=True,
    )
    print(f"    CPU: {result['cpu'].report(result['posted'])}", flush=True)


def _latency(args: argparse.Namespace) -> None:
    from django.db import connections

    from customers.services import source_create

    key = source_create(name="bench").key
    loads = [_load(text) for text in args.loads]
    prefixes = {load: f"lat{load[0]}x{load[1]}" for load in loads}
    started = time.perf_counter()
    _signups("warm", args.warmup_events)
    for load, prefix in prefixes.items():
        _signups(prefix, int(load[0] * args.seconds))
    _purge_queues()
    _vacuum()
    specs = [_worker_spec(text) for text in args.latency_workers]
    workers_text = "; ".join(f"-Q {queues} -c {c}" for queues, c in specs)
    print(
        f"latency: {sum(int(load[0] * args.seconds) for load in loads) + args.warmup_events:,} "
        f"customers signed up through ingest ({time.perf_counter() - started:.1f} s); "
        f"gunicorn 3 gthread workers x 2 threads; Celery {workers_text}",
        flush=True,
    )
    connections.close_all()
    server = _start_server(args.port)
    workers = [_celery_worker(args, queues, c, f"w{n}") for n, (queues, c) in enumerate(specs)]
    try:
        _worker_ready(len(workers))
        warm = Poster(args.port, key, [f"warm-{n}" for n in range(args.warmup_events)], 20, 4)
        warm.run()
        _wait_sent("warm", len(warm.posted), timeout=args.drain_timeout)
        for (rate, per_post), prefix in prefixes.items():
            _latency_print(_latency_run(args, key, rate, per_post, prefix))
            connections.close_all()
    finally:
        _stop(server)
        for worker in workers:
            _stop(worker)


# --- Main ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument(
        "--channels", nargs="+", default=["email", "sms"], choices=sorted(TEMPLATES)
    )
    parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes")
    parser.add_argument(
        "--loads", nargs="+", default=["100", "1000x10"],
        help="events/s to offer, each optionally xEVENTS_PER_POST (default: 100 single "
        "/v1/track calls, then 1,000 in /v1/batch calls of 10)",
    )  # fmt: skip
    parser.add_argument(
        "--latency-workers", nargs="+", default=[f"{ALL_QUEUES}:2"],
        help="Celery workers for the latency runs, each QUEUES:CONCURRENCY (default: the "
        "README's one worker on every queue, default concurrency = 2 cores)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=25.0, help="POSTing time per load")
    parser.add_argument("--warmup-events", type=int, default=100)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--skip-advance", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    return parser


def main() -> None:
    args = _parser().parse_args()
    args.database_url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB
    args.broker = os.environ.get("BENCH_BROKER_URL") or DEFAULT_BROKER
    env = _environment(args.database_url, args.broker)
    os.environ.update(env)
    _database_create(args.database_url)
    _django(env)
    _purge_queues()
    versions = _setup()
    if not args.skip_advance:
        _advance(args, versions)
    if not args.skip_latency:
        _latency(args)


if __name__ == "__main__":
    main()
