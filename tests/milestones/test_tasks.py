"""Wiring: ingest hands pairs to the evaluator; tasks drain in bounded rounds."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.ingest.parsing import Limits, parse_batch
from customers.ingest.service import events_ingest
from customers.models import Customer, Source
from milestones.evaluation import pending_evaluate
from milestones.models import MilestoneDefinition, PendingEvaluation, Progress
from milestones.registry import registry
from milestones.sweep import progress_start
from milestones.tasks import deadlines_sweep_task, evaluate_task
from tests.factories import SourceFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
_ids = itertools.count()


def ingest(source: Source, *calls: tuple[str, str]) -> None:
    batch = [
        {
            "type": "track",
            "userId": user,
            "event": event,
            "timestamp": T0.isoformat(),
            "messageId": f"t-{next(_ids)}",
        }
        for user, event in calls
    ]
    parsed = parse_batch(orjson.dumps({"batch": batch}), T0, Limits())
    events_ingest(source_id=source.pk, messages=parsed.messages, received_at=T0)


@pytest.fixture
def woken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    calls: list[bool] = []
    monkeypatch.setattr("milestones.tasks.evaluate_task.delay", lambda: calls.append(True))
    return calls


def test_a_batch_that_affects_a_milestone_wakes_the_evaluator_once_after_commit(
    milestone: Make, woken: list[bool], django_capture_on_commit_callbacks: Any
) -> None:
    milestone()
    source = SourceFactory()

    with django_capture_on_commit_callbacks(execute=True):
        ingest(source, ("u1", "Task Done"), ("u2", "Task Done"), ("u1", "Page Viewed"))

    assert woken == [True]
    assert PendingEvaluation.objects.count() == 2


def test_a_batch_no_milestone_reads_neither_writes_nor_wakes(
    milestone: Make, woken: list[bool], django_capture_on_commit_callbacks: Any
) -> None:
    milestone()
    source = SourceFactory()

    with django_capture_on_commit_callbacks(execute=True):
        ingest(source, ("u1", "Page Viewed"))

    assert woken == []
    assert not PendingEvaluation.objects.exists()


def test_recording_pending_pairs_costs_ingest_exactly_one_statement(milestone: Make) -> None:
    source = SourceFactory()
    ingest(source, ("warm", "Page Viewed"))  # customer rows and caches exist
    with CaptureQueriesContext(connection) as without:
        ingest(source, ("warm", "Task Done"))
    milestone()
    registry()  # warm, as it is in a running web process
    with CaptureQueriesContext(connection) as with_milestone:
        ingest(source, ("warm", "Task Done"))

    extra = len(with_milestone.captured_queries) - len(without.captured_queries)
    assert extra == 1
    pending = [q for q in with_milestone.captured_queries if "pendingevaluation" in q["sql"]]
    assert len(pending) == 1
    assert "INSERT INTO milestones_pendingevaluation" in pending[0]["sql"]


def test_the_evaluate_task_drains_everything_pending(milestone: Make, woken: list[bool]) -> None:
    milestone()
    source = SourceFactory()
    ingest(source, *((f"u{i}", "Task Done") for i in range(5)))

    with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
        assert evaluate_task() == 5

    assert Progress.objects.filter(state="achieved").count() == 5
    assert woken == []


def test_a_long_queue_is_handed_over_to_a_fresh_task_after_its_rounds(
    milestone: Make, woken: list[bool], settings: Any
) -> None:
    settings.MILESTONES_EVALUATE_BATCH = 2
    milestone()
    source = SourceFactory()
    ingest(source, *((f"u{i}", "Task Done") for i in range(5)))

    with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
        assert evaluate_task(rounds=2) == 4

    assert woken == [True]
    assert PendingEvaluation.objects.count() == 1


def test_a_sweep_that_records_misses_wakes_the_evaluator_for_late_achievers(
    milestone: Make, woken: list[bool], settings: Any
) -> None:
    settings.MILESTONES_SWEEP_GRACE_SECONDS = 0
    milestone(window=dt.timedelta(days=1))
    source = SourceFactory()
    ingest(source, ("u1", "Page Viewed"))
    with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
        evaluate_task()  # starts nothing: Page Viewed is not read by the milestone
    with time_machine.travel(T0 + dt.timedelta(minutes=2), tick=False):
        progress_start()
        evaluate_task()
    assert woken == []

    with time_machine.travel(T0 + dt.timedelta(days=2), tick=False):
        assert deadlines_sweep_task() == 1
        assert deadlines_sweep_task() == 0

    assert woken == [True]


def test_a_pair_already_waiting_gets_no_second_pending_row(milestone: Make) -> None:
    milestone()
    source = SourceFactory()

    for _ in range(3):  # a busy customer, one event per ingested batch
        ingest(source, ("u1", "Task Done"))

    assert PendingEvaluation.objects.count() == 1


def test_one_claim_takes_every_waiting_milestone_of_its_subjects(milestone: Make) -> None:
    milestone("tasks")
    milestone("reports", condition={"type": "event_count", "event": "Report", "at_least": 1})
    source = SourceFactory()
    ingest(source, ("u1", "Task Done"))
    ingest(source, ("u2", "Task Done"))
    ingest(source, ("u1", "Report"))
    first, second = (Customer.objects.get(external_id=u).pk for u in ("u1", "u2"))

    with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
        summary = pending_evaluate(limit=1)

    assert summary.pairs == 2
    assert list(PendingEvaluation.objects.values_list("subject_id", flat=True)) == [second]
    assert sorted(Progress.objects.values_list("definition__key", "subject_id")) == [
        ("reports", first),
        ("tasks", first),
    ]
