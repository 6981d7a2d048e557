"""A real worker on the real broker (Redis in CI): a task goes to its concern's queue and is
consumed there, and a worker on another queue leaves it alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker

from config.celery import app

received: dict[str, threading.Event] = {}


@app.task(name="milestones.test_probe", ignore_result=True)
def probe(token: str) -> None:
    received[token].set()


@pytest.fixture
def evaluate_worker() -> Iterator[None]:
    with start_worker(
        app, queues=["evaluate"], pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        yield


def test_a_task_reaches_a_worker_on_its_queue_through_the_broker(evaluate_worker: None) -> None:
    received["reached"] = threading.Event()

    probe.delay("reached")

    assert received["reached"].wait(timeout=10)


def _waiting(queue: str) -> int:
    # The Redis transport keeps a queue's messages in lists named after it (one per priority).
    with app.connection_for_write() as connection:
        return int(connection.default_channel._size(queue))


def test_a_task_waits_on_its_own_queue_until_a_worker_of_that_queue_takes_it() -> None:
    # given: a worker for another concern is running
    received["elsewhere"] = threading.Event()
    with start_worker(
        app, queues=["maintenance"], pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        before = (_waiting("evaluate"), _waiting("maintenance"))

        # when
        probe.delay("elsewhere")

        # then: it sits on the evaluate queue, untouched
        assert (_waiting("evaluate"), _waiting("maintenance")) == (before[0] + 1, before[1])
        assert not received["elsewhere"].is_set()
    with start_worker(
        app, queues=["evaluate"], pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        assert received["elsewhere"].wait(timeout=10)
