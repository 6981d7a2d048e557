"""Ingest benchmark: a real gunicorn server on loopback, real PostgreSQL, realistic events.

Prints: batch ingest events/s end to end, the raw PostgreSQL ``COPY`` rate of the same rows
into the same table and the ratio, p50/p99 latency of single ``track`` calls at half of
peak load, and the RSS of each gunicorn worker. Plain script, not a test:

    .venv/bin/python bench/ingest.py

It uses its own database, BENCH_DATABASE_URL (default milepost_bench on the local server),
which it DROPS and recreates; DATABASE_URL is ignored so a real database is never touched.
Knobs: --workers, --clients, --batch-size, --events, --users.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/milepost_bench"
EVENT_NAMES = [
    ("Report Created", lambda r: {"report_type": r.choice(["funnel", "cohort", "table"])}),
    ("Feature Used", lambda r: {"feature": r.choice(["export", "share", "filter", "alerts"])}),
    ("Invoice Paid", lambda r: {"amount": round(r.uniform(5, 500), 2), "currency": "USD"}),
    ("Onboarding Step Completed", lambda r: {"step": r.randint(1, 6), "total_steps": 6}),
    ("Seat Invited", lambda r: {"role": r.choice(["admin", "member"])}),
]


def _event(rng: random.Random, user: int, now: dt.datetime) -> dict[str, object]:
    name, props = rng.choice(EVENT_NAMES)
    occurred = now - dt.timedelta(seconds=rng.randint(0, 3600))
    return {
        "type": "track",
        "event": name,
        "userId": f"user-{user}",
        "anonymousId": f"anon-{user}",
        "messageId": str(uuid.uuid4()),
        "timestamp": occurred.isoformat(),
        "properties": {**props(rng), "plan": rng.choice(["free", "pro"]), "path": "/app/home"},
        "context": {
            "library": {"name": "analytics-node", "version": "6.2.0"},
            "ip": f"10.0.{user % 250}.{rng.randint(1, 250)}",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15",
            "locale": "en-US",
            "timezone": "Europe/Berlin",
            "page": {"url": "https://app.example.com/app/home", "title": "Home"},
        },
    }


def _batches(rng: random.Random, count: int, size: int, users: int) -> list[bytes]:
    now = dt.datetime.now(dt.UTC)
    bodies = []
    for _ in range(count):
        batch = [_event(rng, rng.randrange(users), now) for _ in range(size)]
        bodies.append(orjson.dumps({"batch": batch, "sentAt": now.isoformat()}))
    return bodies


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        auth = base64.b64encode(f"{key}:".encode()).decode()
        self.headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes) -> int:
        self.connection.request("POST", path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {payload[:300]!r}")
        return response.status


def _setup_database(url: str) -> str:
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
    from customers.services import source_create

    return source_create(name="bench").key


def _start_server(
    port: int, workers: int, worker_class: str = "gthread", threads: int = 2
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--keep-alive",
        "75",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    for _ in range(100):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("gunicorn did not start")


def _run_batches(port: int, key: str, bodies: list[bytes], clients: int) -> float:
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        client = Client(port, key)
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            try:
                client.post("/v1/batch", body)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def _paced_load(
    port: int, key: str, bodies: list[bytes], rate: float, size: int, stop: threading.Event
) -> None:
    client = Client(port, key)
    interval = size / rate
    next_at = time.perf_counter()
    for body in bodies:
        if stop.is_set():
            return
        client.post("/v1/batch", body)
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)


def _track_latencies(port: int, key: str, count: int, users: int) -> list[float]:
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    client = Client(port, key)
    latencies = []
    for _ in range(count):
        body = orjson.dumps(_event(rng, rng.randrange(users), now))
        started = time.perf_counter()
        client.post("/v1/track", body)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _copy_rate(bodies: list[bytes]) -> tuple[int, float]:
    """COPY the same rows into customers_event, the way a bare bulk loader would."""
    from django.db import connection

    from customers.models import Customer, Source

    source_id = Source.objects.get(name="bench").pk
    owners = dict(Customer.objects.values_list("external_id", "id"))
    received = dt.datetime.now(dt.UTC)
    rows = []
    for body in bodies:
        for item in orjson.loads(body)["batch"]:
            rows.append(
                (
                    source_id,
                    f"copy-{item['messageId']}",
                    owners[item["userId"]],
                    None,
                    "track",
                    item["event"],
                    orjson.dumps(item["properties"]).decode(),
                    orjson.dumps(item["context"]).decode(),
                    dt.datetime.fromisoformat(item["timestamp"]),
                    received,
                )
            )
    connection.ensure_connection()
    raw = connection.connection
    sql = (
        "COPY customers_event (source_id, message_id, customer_id, account_id, type, name, "
        "properties, context, occurred_at, received_at) FROM STDIN"
    )
    started = time.perf_counter()
    with raw.transaction(), raw.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            with cursor.copy(sql) as copy:
                for row in rows[start : start + 5000]:
                    copy.write_row(row)
    return len(rows), time.perf_counter() - started


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE customers_customer, customers_identity, customers_event")


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by gunicorn, PostgreSQL and this load generator."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"gunicorn": 0.0, "postgres": 0.0, "load generator": 0.0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if "gunicorn" in command:
            totals["gunicorn"] += used
        elif command.startswith("postgres") or "postgres:" in command:
            totals["postgres"] += used
        elif int(pid) == os.getpid():
            totals["load generator"] += used
    return totals


def _worker_rss(server: subprocess.Popen[bytes]) -> list[float]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--tracks", type=int, default=2_000)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB
    key = _setup_database(url)
    rng = random.Random(42)
    print(f"generating {args.events:,} events for {args.users:,} users ...", flush=True)
    warmup = _batches(rng, max(1, args.users // args.batch_size * 2), args.batch_size, args.users)
    bodies = _batches(rng, args.events // args.batch_size, args.batch_size, args.users)
    paced = _batches(rng, 400, args.batch_size, args.users)
    mean_bytes = statistics.mean(len(b) for b in bodies) / args.batch_size
    server = _start_server(args.port, args.workers, args.worker_class, args.threads)
    try:
        _run_batches(args.port, key, warmup, args.clients)  # creates the customers
        _analyze()  # steady state: a live database has planner statistics
        cpu_before = _cpu_seconds()
        elapsed = _run_batches(args.port, key, bodies, args.clients)
        cpu_after = _cpu_seconds()
        ingested = len(bodies) * args.batch_size
        rate = ingested / elapsed
        print(
            f"batch ingest: {ingested:,} events in {elapsed:.2f} s = {rate:,.0f} events/s "
            f"({args.workers} gunicorn {args.worker_class} workers x {args.threads} threads, "
            f"{args.clients} clients, "
            f"{args.batch_size}/batch, {mean_bytes:.0f} B/event)",
            flush=True,
        )
        split = ", ".join(
            f"{name} {(cpu_after[name] - cpu_before[name]) / ingested * 1e6:.1f} µs/event "
            f"({(cpu_after[name] - cpu_before[name]) / elapsed * 100:.0f}% of a core)"
            for name in cpu_after
        )
        print(f"  CPU during batch ingest: {split}", flush=True)

        stop = threading.Event()
        background = threading.Thread(
            target=_paced_load,
            args=(args.port, key, paced, rate / 2, args.batch_size, stop),
        )
        background.start()
        latencies = _track_latencies(args.port, key, args.tracks, args.users)
        stop.set()
        background.join()
        quantiles = statistics.quantiles(latencies, n=100)
        print(
            f"single track at ~{rate / 2:,.0f} events/s background load: "
            f"p50 {quantiles[49]:.2f} ms, p99 {quantiles[98]:.2f} ms "
            f"({len(latencies)} calls)",
            flush=True,
        )
        rss = _worker_rss(server)
        print("gunicorn worker RSS: " + ", ".join(f"{m:.0f} MB" for m in rss), flush=True)
    finally:
        server.terminate()
        server.wait()
    copied, copy_elapsed = _copy_rate(bodies)
    copy_rate = copied / copy_elapsed
    print(
        f"raw COPY of the same rows: {copied:,} rows in {copy_elapsed:.2f} s "
        f"= {copy_rate:,.0f} rows/s",
        flush=True,
    )
    print(f"ratio ingest / COPY: {rate / copy_rate:.2f}", flush=True)


if __name__ == "__main__":
    main()
