"""Scaling out: two worker processes at once against one broker, each started as a host would
start it (``celery -A config worker -Q <queues> -n <name>``) and consuming its own queue. Each
task runs on the worker of the queue it is routed to; the console lists both workers with
their queues and pools, and counts the tasks they ran.

Nothing sleeps to order things: the tests wait for conditions with a deadline. The workers
start once for the module (a couple of seconds) and are stopped after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from config.celery import QUEUES, app
from ops import console
from ops.selectors import broker_redis
from ops.task_counts import TaskCount, task_counts_read
from tests.ops import probes

EVALUATE_WORKER = "evaluate-worker@ops-test"
EMAIL_WORKER = "email-worker@ops-test"
WORKERS = {
    EVALUATE_WORKER: ["-Q", "evaluate", "-P", "solo", "-c", "1"],
    EMAIL_WORKER: ["-Q", "messages.email", "-P", "prefork", "-c", "2"],
}
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5
STARTUP_SECONDS = 60  # two Django processes starting at once on a busy 2-core machine


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)  # a polling interval, not an ordering


@pytest.fixture(scope="module")
def broker() -> Iterator[redis.Redis]:
    client = broker_redis(timeout=2)
    assert client is not None, "the scale-out tests need a Redis broker"
    with client:
        yield client


@pytest.fixture(scope="module")
def two_workers(broker: redis.Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The two worker processes, answering pings; their logs are shown if one fails."""
    # An embedded test worker elsewhere may have narrowed the app's queue selection, and
    # purge() empties the selected queues only.
    app.amqp.queues.select(QUEUES)
    app.control.purge()  # tasks other tests left behind
    logs = tmp_path_factory.mktemp("workers")
    environment = {**os.environ, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
    processes = {
        name: subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-n",
                name,
                *options,
                "--include",
                "tests.ops.probes",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=environment,
            stdout=(logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for name, options in WORKERS.items()
    }
    try:
        wait_for(
            lambda: _answering() == set(WORKERS) or _exited(processes, logs),
            "both workers answer a ping",
            timeout=STARTUP_SECONDS,
        )
        assert not _exited(processes, logs)
        yield
    finally:
        for process in processes.values():
            process.terminate()  # a warm shutdown, as a deploy would stop it
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _forget_runs(broker)


def _answering() -> set[str]:
    replies = app.control.ping(destination=list(WORKERS), timeout=0.5)
    return {name for reply in replies for name in reply}


def _exited(processes: dict[str, subprocess.Popen[bytes]], logs: Path) -> str:
    return "".join(
        f"{name} exited with {process.returncode}:\n{(logs / f'{name}.log').read_text()}"
        for name, process in processes.items()
        if process.poll() is not None
    )


def _forget_runs(client: redis.Redis) -> None:
    keys = list(client.scan_iter(match=f"{probes.PREFIX}*"))
    if keys:
        client.delete(*keys)


def test_each_worker_runs_the_tasks_routed_to_its_queue(
    two_workers: None, broker: redis.Redis, task_counts_cleared: None
) -> None:
    # given
    run = uuid.uuid4().hex[:8]
    evaluate = [f"{run}-evaluate-{n}" for n in range(ROUNDS)]
    email = [f"{run}-email-{n}" for n in range(ROUNDS)]

    # when: both kinds interleaved, as producers would send them
    for evaluate_token, email_token in zip(evaluate, email, strict=True):
        probes.evaluate_probe.delay(evaluate_token)
        probes.email_probe.delay(email_token)

    # then: each ran on the worker of its queue (the node name Celery gives the task)
    def ran() -> dict[str, str]:
        found = broker.mget([probes.PREFIX + token for token in evaluate + email])
        return {
            token: hostname.decode()
            for token, hostname in zip(evaluate + email, found, strict=True)
            if hostname is not None
        }

    wait_for(lambda: len(ran()) == 2 * ROUNDS, "every task ran")
    assert ran() == dict.fromkeys(evaluate, EVALUATE_WORKER) | dict.fromkeys(email, EMAIL_WORKER)
    # and each worker counted its tasks for the console (once each task had returned)
    expected = (
        TaskCount(task="messaging.email.ops_scale_probe", succeeded=ROUNDS, failed=0, retried=0),
        TaskCount(task="milestones.ops_scale_probe", succeeded=ROUNDS, failed=0, retried=0),
    )
    wait_for(lambda: task_counts_read().counts == expected, "both workers counted their tasks")


def test_the_console_lists_each_worker_with_its_queues_and_pool(two_workers: None) -> None:
    # when
    started = time.monotonic()
    read = console.workers_read()
    elapsed = time.monotonic() - started

    # then: the workers had their second to answer, and no more was waited
    assert (read.ok, read.detail) == (True, "2 answered within 1 s")
    assert [
        (w.hostname, w.queues, w.pool, w.concurrency, w.prefetch_count) for w in read.workers
    ] == [
        (EMAIL_WORKER, ("messages.email",), "prefork", 2, 2),
        (EVALUATE_WORKER, ("evaluate",), "solo", 1, 1),
    ]
    assert 1.0 <= elapsed < console.WORKERS_DEADLINE_SECONDS


def test_a_worker_is_read_from_its_replies_even_without_its_queues() -> None:
    stats = {
        "total": {"a": 3, "b": 4},
        "pool": {"implementation": "celery.concurrency.thread:TaskPool", "max-concurrency": 8},
        "prefetch_count": 8,
        "uptime": 3600,
    }

    assert console.worker_parse("w1@host", stats, None) == console.Worker(
        hostname="w1@host",
        pool="threads",
        concurrency=8,
        queues=(),
        prefetch_count=8,
        tasks_done=7,
        uptime_seconds=3600,
    )
