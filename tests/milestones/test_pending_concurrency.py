"""Pending rows between ingest and the evaluator, on real concurrent transactions: ingest adds
no row for a pair that waits unclaimed, yet never loses a wake-up to an evaluator that has
claimed the pair, and an evaluator never claims a row an unfinished ingest relies on."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction

from customers.models import Source
from milestones.evaluation import _claim, pending_evaluate
from milestones.models import MilestoneDefinition, PendingEvaluation, Progress
from tests.factories import SourceFactory
from tests.milestones.conftest import T0
from tests.milestones.test_tasks import ingest

pytestmark = pytest.mark.django_db(transaction=True)

Make = Callable[..., MilestoneDefinition]
TWO_TASKS = {"type": "event_count", "event": "Task Done", "at_least": 2}


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _finished(run: tuple[threading.Thread, list[BaseException]]) -> None:
    thread, errors = run
    thread.join(timeout=20)
    assert not thread.is_alive(), "the thread is still blocked"
    assert errors == []


@pytest.fixture
def source(db: None) -> Source:
    return SourceFactory()


def test_ingest_gives_a_pair_claimed_by_a_running_evaluator_a_new_row_without_waiting(
    milestone: Make, source: Source
) -> None:
    milestone(condition=TWO_TASKS)
    ingest(source, ("u1", "Task Done"))
    (first,) = PendingEvaluation.objects.values_list("pk", flat=True)
    claimed, release = threading.Event(), threading.Event()

    def evaluator() -> None:
        with transaction.atomic():
            assert len(_claim(10)) == 1
            claimed.set()
            assert release.wait(timeout=20)

    holding = _in_thread(evaluator)
    assert claimed.wait(timeout=20)

    # when: the same pair gets a new event while the evaluator holds its claim
    _finished(_in_thread(lambda: ingest(source, ("u1", "Task Done"))))

    release.set()
    _finished(holding)
    # then: the claimed row is gone, and a new one wakes an evaluation that sees both events
    ((pk, _),) = PendingEvaluation.objects.values_list("pk", "subject_id")
    assert pk != first
    with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
        assert pending_evaluate().pairs == 1
    assert Progress.objects.get().state == "achieved"


def test_the_evaluator_skips_a_row_an_unfinished_ingest_relies_on_until_it_commits(
    milestone: Make, source: Source
) -> None:
    milestone(condition=TWO_TASKS)
    ingest(source, ("u1", "Task Done"))
    ingested, release = threading.Event(), threading.Event()

    def second_batch() -> None:
        with transaction.atomic():
            ingest(source, ("u1", "Task Done"))  # finds the waiting row: adds none
            ingested.set()
            assert release.wait(timeout=20)

    running = _in_thread(second_batch)
    assert ingested.wait(timeout=20)

    # when: an evaluator runs while that batch is uncommitted
    with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
        during = pending_evaluate().pairs
        release.set()
        _finished(running)
        after = pending_evaluate().pairs

    # then: it claims nothing until the batch's events are visible, then sees both events
    assert (during, after) == (0, 1)
    assert PendingEvaluation.objects.count() == 0
    assert Progress.objects.get().state == "achieved"
