"""Coalesced wake-ups: a burst of commits queues one drain task while one is waiting, and a
task that has started draining lets the next commit queue another."""

from __future__ import annotations

from typing import Any

import pytest

from config.wake import drain, wake, woken


class Task:
    def __init__(self, name: str) -> None:
        self.name = name
        self.queued = 0

    def delay(self) -> None:
        self.queued += 1


def test_a_burst_of_wakes_queues_one_task_until_it_starts() -> None:
    task = Task("tests.drain")

    for _ in range(5):
        wake(task)
    assert task.queued == 1

    woken(task)  # the task starts draining: what commits from now on needs a new wake-up
    wake(task)
    wake(task)
    assert task.queued == 2


def test_each_task_has_its_own_flag() -> None:
    first, second = Task("tests.first"), Task("tests.second")

    wake(first)
    wake(second)

    assert (first.queued, second.queued) == (1, 1)


@pytest.mark.parametrize(
    "broker", ["filesystem://", "redis://127.0.0.1:1/0"], ids=["no-redis", "redis-down"]
)
def test_without_a_reachable_redis_every_wake_queues(settings: Any, broker: str) -> None:
    settings.CELERY_BROKER_URL = broker
    task = Task("tests.drain")

    wake(task)
    wake(task)

    assert task.queued == 2


def test_a_wake_whose_task_could_not_be_queued_leaves_no_flag_behind() -> None:
    class Broken(Task):
        def delay(self) -> None:
            raise ConnectionError("broker down")

    broken = Broken("tests.drain")
    with pytest.raises(ConnectionError):
        wake(broken)
    task = Task("tests.drain")

    wake(task)

    assert task.queued == 1


def test_a_drain_stops_at_the_first_empty_batch_and_clears_its_flag() -> None:
    task = Task("tests.drain")
    wake(task)
    batches = iter([3, 2, 0, 5])

    assert drain(task, lambda: next(batches), rounds=10) == 5

    assert task.queued == 1  # not queued again: the queue was empty
    wake(task)  # the flag was cleared as the drain started
    assert task.queued == 2


def test_a_drain_that_uses_all_its_rounds_queues_itself_again() -> None:
    task = Task("tests.drain")

    assert drain(task, lambda: 4, rounds=3) == 12

    assert task.queued == 1
