"""Milestones benchmark: evaluation throughput, the missed-deadline sweep, worker memory.

Prints, on real PostgreSQL and Redis:

1. Evaluation throughput with 20 active definitions of mixed types: a backlog of events is
   ingested through ``events_ingest`` (batches of 100, the ``events_stored`` hook writes the
   pending rows), then drained (a) by real Celery workers on the ``evaluate`` queue and
   (b) by N processes calling ``pending_evaluate()``; events/s from the first evaluation to
   the moment ``PendingEvaluation`` is empty, the CPU split and every worker's peak RSS.
   Then a live wave: workers running while events are ingested, end to end.
2. The missed sweep over 1,000,000 in-progress rows whose deadline has passed, and over
   10,000 due rows among 1,000,000 not due (``deadlines_sweep()`` in a fresh process).
3. The backfill benchmark (``bench/milestones_backfill.py``), when present, in a fresh
   interpreter on its own database (BENCH_BACKFILL_DATABASE_URL, default its own).

Targets on a 2-core machine: >= 20,000 events/s evaluated (under 10,000 is a defect); sweep
of 1M due rows <= 15 s, <= 1 s when 1 % are due; every worker process <= 250 MB RSS.

    .venv/bin/python bench/milestones.py [--events 400000] [--skip-backfill]

It uses its own database, BENCH_DATABASE_URL (default milepost_bench_milestones on the local
server), which it DROPS and recreates, and its own broker, BENCH_BROKER_URL (default
redis://127.0.0.1:6379/7), whose queues it purges; DATABASE_URL is ignored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/milepost_bench_milestones"
DEFAULT_BROKER = "redis://127.0.0.1:6379/7"
BIN = Path(sys.executable).parent
TARGET_EVENTS_PER_SECOND = 20_000
DEFECT_EVENTS_PER_SECOND = 10_000
TARGET_RSS_MB = 250.0
SOURCE = "bench"
DAY = 86_400.0

# --- The workload -------------------------------------------------------------------------

_FEATURES = ("export", "share", "filter", "alerts", "api")
_REPORTS = ("funnel", "cohort", "table", "retention")
# (name, weight, properties)
EVENTS: list[tuple[str, int, Callable[[random.Random], dict[str, object]]]] = [
    ("Dashboard Viewed", 20, lambda r: {"dashboard": r.choice(("home", "sales", "ops"))}),
    ("Feature Used", 18, lambda r: {"feature": r.choice(_FEATURES), "plan": "pro"}),
    ("Report Created", 14, lambda r: {"report_type": r.choice(_REPORTS), "rows": r.randint(1, 99)}),
    ("Task Completed", 14, lambda r: {"list": f"p{r.randint(1, 9)}", "points": r.randint(1, 8)}),
    ("Onboarding Step Completed", 8, lambda r: {"step": r.randint(1, 6), "total_steps": 6}),
    ("Spending Checked", 8, lambda r: {"category": r.choice(("food", "rent", "travel"))}),
    ("Invoice Paid", 5, lambda r: {"amount": round(r.uniform(5, 400), 2), "currency": "USD"}),
    ("Order Completed", 5, lambda r: {"total": round(r.uniform(8, 250), 2), "items": 2}),
    ("Seat Invited", 4, lambda r: {"role": r.choice(("admin", "member"))}),
    ("Integration Connected", 4, lambda r: {"provider": r.choice(("slack", "github", "s3"))}),
]  # fmt: skip


def _days(n: int) -> dict[str, int]:
    return {"days": n}


def _count(event: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "event_count", "event": event, "at_least": n, **extra}


def _eq(prop: str, value: object) -> list[dict[str, object]]:
    return [{"property": prop, "op": "eq", "value": value}]


_STEP = "Onboarding Step Completed"
_REPORT = "Report Created"
# key -> definition fields. Mixed on purpose: counts with and without windows and filters,
# sums, distinct days, streaks, a sequence, composites, an event anchor, an account unit.
DEFINITIONS: dict[str, dict[str, Any]] = {
    "onboarding-step-1": {"condition": _count(_STEP, 1, where=_eq("step", 1))},
    "onboarding-complete": {
        "condition": _count(_STEP, 1, where=_eq("step", 6)),
        "window": dt.timedelta(days=14),
    },
    "three-reports-a-week": {"condition": _count("Report Created", 3, within=_days(7))},
    "funnel-reports": {"condition": _count(_REPORT, 2, where=_eq("report_type", "funnel"))},
    "first-invoice": {"condition": _count("Invoice Paid", 1), "window": dt.timedelta(days=30)},
    "revenue-500": {
        "condition": {"type": "property_sum", "event": "Invoice Paid", "property": "amount",
                      "at_least": 500},
    },
    "revenue-200-a-month": {
        "condition": {"type": "property_sum", "event": "Invoice Paid", "property": "amount",
                      "at_least": 200, "within": _days(30)},
    },
    "five-active-days": {"condition": {"type": "distinct_days", "event": "Dashboard Viewed",
                                       "days": 5}},
    "three-feature-days-a-week": {
        "condition": {"type": "distinct_days", "event": "Feature Used", "days": 3,
                      "within": _days(7)},
    },
    "daily-streak-3": {"condition": {"type": "streak", "event": "Dashboard Viewed", "periods": 3,
                                     "unit": "day"}},
    "weekly-spending-streak-4": {
        "condition": {"type": "streak", "event": "Spending Checked", "periods": 4, "unit": "week"},
    },
    "setup-sequence": {
        "condition": {"type": "sequence", "steps": [
            {"event": "Onboarding Step Completed", "where": _eq("step", 1)},
            {"event": "Integration Connected", "within": _days(3)},
            {"event": "Report Created", "within": _days(7)},
        ]},
    },
    "team-activated": {
        "condition": {"type": "all", "conditions": [
            _count("Seat Invited", 1), _count("Task Completed", 1),
            _count("Integration Connected", 1),
        ]},
        "window": dt.timedelta(days=10),
    },
    "engaged": {
        "condition": {"type": "any", "conditions": [
            _count("Report Created", 10),
            {"type": "distinct_days", "event": "Feature Used", "days": 7},
        ]},
    },
    "team-feature-adoption": {
        "unit": "account",
        "condition": {"type": "distinct_count", "event": "Feature Used", "of": "customer",
                      "at_least": 3},
    },
    "power-exporter": {
        "condition": _count("Feature Used", 5, within=_days(14),
                            where=[{"property": "feature", "op": "in", "value": ["api", "share"]}]),
    },
    "big-order": {"condition": _count("Order Completed", 1,
                                      where=[{"property": "total", "op": "gte", "value": 200}])},
    "second-order-in-45-days": {
        "condition": _count("Order Completed", 2),
        "anchor": "event",
        "anchor_event": "Order Completed",
        "window": dt.timedelta(days=45),
    },
    "twenty-tasks": {"condition": _count("Task Completed", 20)},
    "task-points-50-in-14-days": {
        "condition": {"type": "property_sum", "event": "Task Completed", "property": "points",
                      "at_least": 50, "within": _days(14)},
    },
}  # fmt: skip
STAGES = (
    ("at_risk", 10, [{"milestone": "onboarding-complete", "state": "missed"}]),
    ("active", 20, [{"milestone": "onboarding-complete", "state": "achieved"}]),
    ("onboarding", 30, [{"milestone": "onboarding-complete", "state": "in_progress"}]),
)


def _signup_age(user: int) -> float:
    """Days between a customer's signup and the benchmark's "now": 0.5 to 60."""
    return random.Random(user * 7919).uniform(0.5, 60)


def _payloads(now: float, users: int, count: int, seed: int, prefix: str) -> Iterator[dict]:  # type: ignore[type-arg]
    rng = random.Random(seed)
    names = [name for name, _, _ in EVENTS]
    weights = [weight for _, weight, _ in EVENTS]
    properties = {name: props for name, _, props in EVENTS}
    for n in range(count):
        user = rng.randrange(users)
        name = rng.choices(names, weights)[0]
        age = _signup_age(user) * DAY
        occurred = now - age * rng.random()
        yield {
            "type": "track",
            "event": name,
            "userId": f"bench-user-{user}",
            "messageId": f"{prefix}-{n}",
            "timestamp": _iso(occurred),
            "properties": properties[name](rng),
        }


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


def _bodies(items: Iterator[dict], size: int) -> Iterator[bytes]:  # type: ignore[type-arg]
    import orjson

    batch: list[dict] = []  # type: ignore[type-arg]
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield orjson.dumps({"batch": batch, "context": {"library": {"name": "bench"}}})
            batch = []
    if batch:
        yield orjson.dumps({"batch": batch, "context": {"library": {"name": "bench"}}})


# --- Environment --------------------------------------------------------------------------


def _environment(url: str, broker: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",  # DEBUG keeps every query in memory: worker RSS would grow for nothing
        "LOG_LEVEL": "WARNING",
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


def _purge_queues() -> int:
    from config.celery import app

    return int(app.control.purge() or 0)


# --- /proc: CPU and memory ----------------------------------------------------------------


def _proc_rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class CpuMeter:
    """CPU seconds of this process, of the processes it started (Celery workers and their
    pool, evaluate, sweep and ingest processes) and of the PostgreSQL backends serving the
    benchmark's database, sampled from /proc every 0.1 s so that processes which come and go
    are counted too (up to their last sample). Other users of the machine are not counted;
    the load average says how busy it was."""

    def __init__(self, database: str) -> None:
        self.marker = f" {database} ".encode()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuMeter:
        self.self_start = resource.getrusage(resource.RUSAGE_SELF)
        self.load_start = os.getloadavg()[0]
        self._sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(initial=False)
        mine = resource.getrusage(resource.RUSAGE_SELF)
        totals = {"workers": 0.0, "postgres": 0.0}
        for (kind, pid), used in self.last.items():
            totals[kind] += used - self.first.get((kind, pid), 0.0)
        self.seconds = {**totals, "bench": _used(mine) - _used(self.self_start)}
        self.load = (self.load_start, os.getloadavg()[0])

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

    def report(self, events: int | None = None) -> str:
        parts = []
        for name, used in self.seconds.items():
            per = f", {used / events * 1e6:.0f} µs/event" if events else ""
            parts.append(f"{name} {used:.1f} s{per}")
        return f"{'; '.join(parts)} (load average {self.load[0]:.1f} -> {self.load[1]:.1f})"


def _descendants(pid: int) -> list[int]:
    found, frontier = [], _children(pid)
    while frontier:
        child = frontier.pop()
        found.append(child)
        frontier.extend(_children(child))
    return found


def _used(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


class RssSampler:
    """Samples the RSS of a process tree every 0.25 s; keeps each process's max and a trace."""

    def __init__(self, roots: Callable[[], list[int]]) -> None:
        self.roots = roots
        self.peak: dict[int, float] = {}
        self.trace: list[tuple[float, float]] = []  # (time, max RSS of any process)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.25)

    def sample(self) -> None:
        pids = set()
        for root in self.roots():
            pids.add(root)
            pids.update(_children(root))
        biggest = 0.0
        for pid in pids:
            rss = _proc_rss_mb(pid)
            if rss:
                self.peak[pid] = max(self.peak.get(pid, 0.0), rss)
                biggest = max(biggest, rss)
        if biggest:
            self.trace.append((time.monotonic(), biggest))

    def report(self) -> str:
        return ", ".join(f"{mb:.0f} MB" for _, mb in sorted(self.peak.items()))


# --- Children (fresh processes, so their memory is their own) ------------------------------


def _child(kind: str, args: argparse.Namespace) -> None:
    _django(_environment(args.database_url, args.broker_url))
    started = time.perf_counter()
    if kind == "ingest":
        result: dict[str, Any] = _child_ingest(args)
    elif kind == "evaluate":
        result = _child_evaluate()
    elif kind == "sweep":
        result = _child_sweep()
    else:
        raise SystemExit(f"unknown child {kind}")
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = _proc_rss_mb(os.getpid(), "VmHWM")
    print(json.dumps(result), flush=True)


def _child_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from django.utils import timezone

    from customers.ingest.parsing import Limits, parse_batch
    from customers.ingest.service import events_ingest
    from customers.models import Source

    source_id = Source.objects.get(name=SOURCE).pk
    items = _payloads(args.now, args.users, args.count, args.seed, args.prefix)
    bodies = list(_bodies(items, args.batch_size))
    stored = 0
    limits = Limits()
    started = time.perf_counter()
    for body in bodies:
        received_at = timezone.now()
        parsed = parse_batch(body, received_at, limits)
        stored += events_ingest(
            source_id=source_id, messages=parsed.messages, received_at=received_at
        ).stored
    return {"stored": stored, "ingest_seconds": time.perf_counter() - started}


def _child_evaluate() -> dict[str, Any]:
    from milestones.evaluation import pending_evaluate

    pairs = rounds = 0
    while found := pending_evaluate().pairs:
        pairs += found
        rounds += 1
    return {"pairs": pairs, "rounds": rounds}


def _child_sweep() -> dict[str, Any]:
    from milestones.sweep import deadlines_sweep

    result = deadlines_sweep(budget_seconds=600)
    return {"missed": result.missed, "batches": result.batches, "is_done": result.is_done}


def _spawn(kind: str, args: argparse.Namespace, **extra: object) -> subprocess.Popen[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    command += ["--database-url", args.database_url, "--broker-url", args.broker_url]
    for name, value in extra.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def _collect(processes: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"child failed ({process.returncode}): {out[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


# --- Setup --------------------------------------------------------------------------------


def _definitions() -> None:
    from milestones.backfill import backfill_run
    from milestones.models import LifecycleStage
    from milestones.services import definition_activate, definition_create

    for key, fields in DEFINITIONS.items():
        fields = {"name": key.replace("-", " ").capitalize(), "kind": "habit", **fields}
        definition = definition_create(key=key, **fields)
        activation = definition_activate(definition=definition)
        # Nobody exists yet: the activation backfill is empty; run it so the queued task
        # finds it done.
        backfill_run(backfill_id=activation.backfill.pk)
    for key, priority, rules in STAGES:
        LifecycleStage.objects.create(key=key, name=key, priority=priority, rules=rules)


def _population(now: float, users: int, batch_size: int) -> float:
    """Every customer signs up (identify with createdAt) and joins an account of 5 (group)."""
    from django.utils import timezone

    from customers.ingest.parsing import Limits, parse_batch
    from customers.ingest.service import events_ingest
    from customers.models import Source

    source_id = Source.objects.get(name=SOURCE).pk

    def calls() -> Iterator[dict]:  # type: ignore[type-arg]
        for user in range(users):
            signup = now - _signup_age(user) * DAY
            account = user // 5
            yield {
                "type": "identify",
                "userId": f"bench-user-{user}",
                "messageId": f"signup-{user}",
                "timestamp": _iso(signup),
                "traits": {"email": f"user{user}@bench.example", "plan": "pro",
                           "timezone": ("Europe/Berlin", "America/New_York")[user % 2],
                           "createdAt": _iso(signup)},
            }  # fmt: skip
            yield {
                "type": "group",
                "userId": f"bench-user-{user}",
                "groupId": f"bench-account-{account}",
                "messageId": f"group-{user}",
                "timestamp": _iso(signup + 1),
                "traits": {"name": f"Account {account}", "createdAt": _iso(now - 61 * DAY)},
            }

    started = time.perf_counter()
    for body in _bodies(calls(), batch_size):
        received_at = timezone.now()
        parsed = parse_batch(body, received_at, Limits())
        events_ingest(source_id=source_id, messages=parsed.messages, received_at=received_at)
    return time.perf_counter() - started


def _ingest_parallel(
    args: argparse.Namespace, *, count: int, prefix: str, seed: int
) -> tuple[int, float]:
    parts = args.ingest_processes
    started = time.perf_counter()
    processes = [
        _spawn(
            "ingest",
            args,
            now=args.now,
            users=args.users,
            count=count // parts,
            seed=seed + part,
            prefix=f"{prefix}{part}",
            batch_size=args.batch_size,
        )
        for part in range(parts)
    ]
    results = _collect(processes)
    return sum(r["stored"] for r in results), time.perf_counter() - started


# --- Evaluation ---------------------------------------------------------------------------

PENDING = "milestones_pendingevaluation"


def _pending_first_id() -> int | None:
    return _scalar(f"SELECT id FROM {PENDING} ORDER BY id LIMIT 1")


def _wait_empty(poll: float = 0.05, timeout: float = 3600) -> float:
    """Block until no pending row is left (committed); returns the wall-clock time it was."""
    deadline = time.monotonic() + timeout
    while _pending_first_id() is not None:
        if time.monotonic() > deadline:
            raise RuntimeError("pending evaluations did not drain")
        time.sleep(poll)
    return time.time()


def _first_evaluation() -> float:
    """Wall-clock start of the first evaluation transaction (rows carry its ``now``)."""
    first = _scalar("SELECT extract(epoch FROM min(evaluated_at)) FROM milestones_progress")
    return float(first)


def _snapshot() -> int:
    _sql("DROP TABLE IF EXISTS bench_pending")
    _sql(
        f"CREATE UNLOGGED TABLE bench_pending AS SELECT version_id, subject_id, created_at "
        f"FROM {PENDING} ORDER BY id"
    )
    return int(_scalar("SELECT count(*) FROM bench_pending"))


def _reset_evaluation() -> None:
    """Back to the state right after the backlog was ingested."""
    _sql(
        "TRUNCATE milestones_progress, milestones_milestoneoutcome, milestones_stagechange, "
        f"{PENDING}"
    )
    _sql(
        f"INSERT INTO {PENDING} (version_id, subject_id, created_at) "
        "SELECT version_id, subject_id, created_at FROM bench_pending"
    )
    _sql("UPDATE customers_customer SET lifecycle_stage = 'new' WHERE lifecycle_stage <> 'new'")
    _vacuum()


def _vacuum() -> None:
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    previous = raw.autocommit
    raw.autocommit = True
    try:
        raw.execute(
            "VACUUM ANALYZE milestones_progress, milestones_milestoneoutcome, "
            f"{PENDING}, customers_customer, customers_event"
        )
    finally:
        raw.autocommit = previous


def _results() -> str:
    rows = _sql("SELECT state, count(*) FROM milestones_progress GROUP BY state ORDER BY state")
    outcomes = _sql(
        "SELECT kind, count(*) FROM milestones_milestoneoutcome GROUP BY kind ORDER BY kind"
    )
    return (
        "progress " + ", ".join(f"{state} {n:,}" for state, n in rows)
        + "; outcomes " + ", ".join(f"{kind} {n:,}" for kind, n in outcomes)
    )  # fmt: skip


def _celery_worker(args: argparse.Namespace, concurrency: int) -> subprocess.Popen[bytes]:
    command = [
        str(BIN / "celery"), "-A", "config", "worker", "-Q", "evaluate",
        "-c", str(concurrency), "--pool", "prefork", "-l", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"bench-evaluate-{os.getpid()}@%h",
    ]  # fmt: skip
    env = _environment(args.database_url, args.broker_url)
    return subprocess.Popen(command, cwd=ROOT, env=env)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _verdict(rate: float) -> str:
    if rate >= TARGET_EVENTS_PER_SECOND:
        return "target met"
    if rate < DEFECT_EVENTS_PER_SECOND:
        return f"DEFECT: under {DEFECT_EVENTS_PER_SECOND:,}"
    return f"under the {TARGET_EVENTS_PER_SECOND:,} target"


def _rss_verdict(peak: float) -> str:
    return "within 250 MB" if peak <= TARGET_RSS_MB else "OVER 250 MB"


def _database_name(args: argparse.Namespace) -> str:
    return str(args.database_url.rpartition("/")[2])


def _drain_celery(args: argparse.Namespace, events: int) -> float:
    from django.db import connections

    connections.close_all()
    with CpuMeter(_database_name(args)) as cpu:
        worker = _celery_worker(args, args.concurrency)
        try:
            with RssSampler(lambda: [worker.pid]) as rss:
                launched = time.time()
                ended = _wait_empty()
                rss.sample()
        finally:
            _stop(worker)
    started = _first_evaluation()
    elapsed = ended - started
    print(
        f"  Celery worker (-c {args.concurrency}): {events:,} events evaluated in "
        f"{elapsed:.1f} s = {events / elapsed:,.0f} events/s, {_verdict(events / elapsed)} "
        f"(worker start to first evaluation {started - launched:.1f} s)",
        flush=True,
    )
    print(f"    CPU: {cpu.report(events)}", flush=True)
    print(
        f"    worker RSS peak (main, pool...): {rss.report()}, "
        f"{_rss_verdict(max(rss.peak.values(), default=0.0))}",
        flush=True,
    )
    _rss_growth(rss)
    print(f"    {_results()}", flush=True)
    return elapsed


def _rss_growth(rss: RssSampler) -> None:
    if len(rss.trace) < 8:
        return
    quarter = len(rss.trace) // 4
    early = max(mb for _, mb in rss.trace[:quarter])
    late = max(mb for _, mb in rss.trace[-quarter:])
    print(
        f"    largest process RSS in the first quarter of the run {early:.0f} MB, "
        f"in the last {late:.0f} MB",
        flush=True,
    )


def _drain_processes(args: argparse.Namespace, events: int) -> float:
    from django.db import connections

    connections.close_all()
    with CpuMeter(_database_name(args)) as cpu:
        processes = [_spawn("evaluate", args) for _ in range(args.processes)]
        results = _collect(processes)
        ended = _wait_empty()
    started = _first_evaluation()
    elapsed = ended - started
    print(
        f"  {args.processes} processes calling pending_evaluate(): {events:,} events evaluated "
        f"in {elapsed:.1f} s = {events / elapsed:,.0f} events/s, {_verdict(events / elapsed)} "
        f"({sum(r['pairs'] for r in results):,} pairs in "
        f"{sum(r['rounds'] for r in results):,} transactions)",
        flush=True,
    )
    print(f"    CPU: {cpu.report(events)}", flush=True)
    peaks = ", ".join(f"{r['peak_rss_mb']:.0f} MB" for r in results)
    worst = max(r["peak_rss_mb"] for r in results)
    print(f"    process peak RSS (VmHWM): {peaks}, {_rss_verdict(worst)}", flush=True)
    print(f"    {_results()}", flush=True)
    return elapsed


def _live(args: argparse.Namespace) -> None:
    """Workers running while a new wave is ingested: ingest to committed progress."""
    from django.db import connections

    _purge_queues()
    connections.close_all()
    with CpuMeter(_database_name(args)) as cpu:
        worker = _celery_worker(args, args.concurrency)
        time.sleep(args.worker_boot)
        try:
            with RssSampler(lambda: [worker.pid]) as rss:
                started = time.time()
                stored, ingest_elapsed = _ingest_parallel(
                    args, count=args.live_events, prefix="live", seed=1000
                )
                ended = _wait_empty()
        finally:
            _stop(worker)
    elapsed = ended - started
    print(
        f"  live: {stored:,} events ingested by {args.ingest_processes} processes in "
        f"{ingest_elapsed:.1f} s while a worker (-c {args.concurrency}) evaluated; all progress "
        f"committed {elapsed:.1f} s after the first batch = {stored / elapsed:,.0f} events/s "
        "end to end",
        flush=True,
    )
    print(f"    CPU (ingest + evaluation): {cpu.report(stored)}", flush=True)
    print(f"    worker RSS peak: {rss.report()}", flush=True)


# --- Sweep --------------------------------------------------------------------------------


def _sweep_version(key: str) -> tuple[int, int]:
    from milestones.models import MilestoneDefinition

    definition = MilestoneDefinition.objects.get(key=key)
    assert definition.active_version_id is not None
    return definition.active_version_id, definition.pk


def _customers_upto(total: int) -> None:
    """Make customer ids 1..total exist (set-based), so stage refreshes find real rows."""
    _sql(
        "INSERT INTO customers_customer (external_id, email, phone, time_zone, locale, plan, "
        "region, status, lifecycle_stage, traits, created_at, updated_at) "
        "SELECT 'sweep-' || g, '', '', 'UTC', '', 'pro', '', 'active', 'new', '{}', "
        "now() - interval '30 days', now() FROM generate_series(1, %s) g",
        [max(0, total - int(_scalar("SELECT count(*) FROM customers_customer")))],
    )


def _progress_insert(version: int, definition: int, first: int, last: int, due: bool) -> None:
    deadline = "now() - interval '1 day'" if due else "now() + interval '7 days'"
    _sql(
        "INSERT INTO milestones_progress (version_id, definition_id, unit, subject_id, state, "
        "anchor_at, deadline_at, is_late, done, total, label, detail, ineligible_reason, "
        "created_at, updated_at) "
        f"SELECT %s, %s, 'customer', c.id, 'in_progress', now() - interval '15 days', "
        f"{deadline} - (c.id %% 3600) * interval '1 second', false, 0, 1, '0 of 1', '{{}}', '', "
        "now(), now() FROM (SELECT id FROM customers_customer ORDER BY id OFFSET %s LIMIT %s) c",
        [version, definition, first, last - first],
    )


def _sweep_run(args: argparse.Namespace, label: str, target: float | None) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()
    with CpuMeter(_database_name(args)) as cpu:
        result = _collect([_spawn("sweep", args)])[0]
    print(
        f"  {label}: {result['missed']:,} missed in {result['seconds']:.2f} s"
        f"{_seconds_verdict(result['seconds'], target)} "
        f"({result['batches']} batches, {result['missed'] / result['seconds']:,.0f} rows/s; "
        f"peak RSS {result['peak_rss_mb']:.0f} MB, {_rss_verdict(result['peak_rss_mb'])})",
        flush=True,
    )
    print(f"    CPU (process incl. its start-up): {cpu.report()}", flush=True)
    return result


def _seconds_verdict(seconds: float, target: float | None) -> str:
    if target is None:
        return ""
    return f" (target {target:g} s: {'met' if seconds <= target else 'MISSED'})"


def _sweep_reset() -> None:
    _sql(
        f"TRUNCATE milestones_progress, milestones_milestoneoutcome, {PENDING}, "
        "milestones_stagechange"
    )
    _sql("UPDATE customers_customer SET lifecycle_stage = 'new' WHERE lifecycle_stage <> 'new'")


def _sweep(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    _sweep_reset()
    _customers_upto(args.sweep_subjects + args.sweep_subjects // 100)
    print(
        f"sweep: {args.sweep_subjects:,} in-progress customer rows with passed deadlines on one "
        f"version (customers created in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    # A milestone no stage rule reads, then the one the stages follow (every customer moves).
    for key, label in (("first-invoice", "all due"), ("onboarding-complete", "all due, every "
                       "customer changes lifecycle stage")):  # fmt: skip
        version, definition = _sweep_version(key)
        _sweep_reset()
        _progress_insert(version, definition, 0, args.sweep_subjects, due=True)
        _vacuum()
        _sweep_run(args, label, 15.0)
    version, definition = _sweep_version("first-invoice")
    _sweep_reset()
    due = args.sweep_subjects // 100
    _progress_insert(version, definition, 0, args.sweep_subjects, due=False)
    _progress_insert(version, definition, args.sweep_subjects, args.sweep_subjects + due, due=True)
    _vacuum()
    _sweep_run(args, f"1 % due ({due:,} due among {args.sweep_subjects:,} not due)", 1.0)
    _sweep_run(args, "nothing due (an idle tick)", None)


# --- Main ---------------------------------------------------------------------------------


def _backfill_bench(args: argparse.Namespace) -> None:
    """Run ``bench/milestones_backfill.py``'s ``main()`` in a fresh interpreter: it sets up
    Django on its own database, and its peak RSS must be its own, not this process's."""
    if args.skip_backfill:
        return
    if not (ROOT / "bench" / "milestones_backfill.py").exists():
        print("backfill: bench/milestones_backfill.py not found; skipped", flush=True)
        return
    env = {key: value for key, value in os.environ.items() if key != "BENCH_DATABASE_URL"}
    if os.environ.get("BENCH_BACKFILL_DATABASE_URL"):
        env["BENCH_DATABASE_URL"] = os.environ["BENCH_BACKFILL_DATABASE_URL"]
    code = (
        "import sys\n"
        "sys.path.insert(0, 'bench')\n"
        "try:\n"
        "    from milestones_backfill import main\n"
        "except ImportError as exc:\n"
        "    sys.exit(f'backfill: bench/milestones_backfill.py does not import ({exc}); skipped')\n"
        "main([])\n"
    )
    print("backfill (bench/milestones_backfill.py):", flush=True)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--ingest-processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes")
    parser.add_argument("--processes", type=int, default=2, help="pending_evaluate processes")
    parser.add_argument("--live-events", type=int, default=100_000)
    parser.add_argument("--sweep-subjects", type=int, default=1_000_000)
    parser.add_argument("--worker-boot", type=float, default=4.0)
    parser.add_argument("--skip-evaluation", action="store_true")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--skip-processes", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    # Internal: the fresh processes this script starts.
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--broker-url", help=argparse.SUPPRESS)
    parser.add_argument("--now", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    return parser


def _evaluation(args: argparse.Namespace) -> None:
    print(
        f"evaluation: {len(DEFINITIONS)} active definitions, {args.users:,} customers in "
        f"{args.users // 5:,} accounts, {args.events:,} events",
        flush=True,
    )
    stored, elapsed = _ingest_parallel(args, count=args.events, prefix="e", seed=1)
    pending = int(_scalar(f"SELECT count(*) FROM {PENDING}"))
    distinct = int(
        _scalar(f"SELECT count(*) FROM (SELECT DISTINCT version_id, subject_id FROM {PENDING}) d")
    )
    print(
        f"  backlog ingest ({args.ingest_processes} processes, {args.batch_size}/batch, no "
        f"worker running): {stored:,} events in {elapsed:.1f} s = {stored / elapsed:,.0f} "
        f"events/s; {pending:,} pending rows ({distinct:,} distinct pairs, "
        f"{pending / stored:.2f} per event)",
        flush=True,
    )
    _snapshot()
    _vacuum()
    evaluated = 0.0
    if not args.skip_celery:
        evaluated = _drain_celery(args, stored)
        print(
            f"  ingest + evaluate, one after the other: {stored / (elapsed + evaluated):,.0f} "
            "events/s",
            flush=True,
        )
        _purge_queues()
    if not args.skip_processes:
        if not args.skip_celery:
            _reset_evaluation()
        _drain_processes(args, stored)
    if not args.skip_live:
        _live(args)


def main() -> None:
    args = _parser().parse_args()
    if args.child:
        _child(args.child, args)
        return
    args.database_url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB
    args.broker_url = os.environ.get("BENCH_BROKER_URL") or DEFAULT_BROKER
    args.now = time.time()
    env = _environment(args.database_url, args.broker_url)
    os.environ.update(env)
    _database_create(args.database_url)
    _django(env)
    _purge_queues()
    from customers.services import source_create

    source_create(name=SOURCE)
    _definitions()
    seconds = _population(args.now, args.users, args.batch_size)
    print(
        f"setup: {args.users:,} customers signed up through ingest in {seconds:.1f} s", flush=True
    )
    _purge_queues()
    _vacuum()
    if not args.skip_evaluation:
        _evaluation(args)
    if not args.skip_sweep:
        _sweep(args)
    _backfill_bench(args)


if __name__ == "__main__":
    main()
