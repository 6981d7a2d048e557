"""The evaluator with real parallel workers on real PostgreSQL transactions: two workers on
the same subjects at once neither lose nor double an outcome; real Celery workers fed by
concurrent ingest end where a from-scratch evaluation does; the missed-deadline sweep racing
the evaluator gives every subject exactly the right outcomes.

No sleeps to order things: a test that needs one transaction to wait for another waits
until PostgreSQL shows the lock wait, and end states are polled for with a time limit."""

from __future__ import annotations

import collections
import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from celery.signals import task_failure
from django.db import connection, transaction
from django.utils import timezone

from config.celery import app
from customers.models import Customer, Source
from milestones import sweep
from milestones.evaluation import Pair, Summary, pairs_evaluate, pending_evaluate
from milestones.models import (
    LifecycleStage,
    MilestoneOutcome,
    PendingEvaluation,
    Progress,
    StageChange,
)
from milestones.registry import CompiledVersion, registry
from milestones.signals import OutcomeRecord, outcomes_recorded
from milestones.stages import stages_refresh
from milestones.tasks import progress_start_task
from tests.factories import SourceFactory
from tests.milestones.conftest import T0
from tests.milestones.oracle import (
    ORDER,
    REPORT,
    SESSION,
    Call,
    Judged,
    as_stored,
    chunks,
    customers_bulk,
    deliver,
    expected_state,
    histories,
    milestones_activate,
    outcome_state,
    progress_state,
    stored_calls,
)

pytestmark = pytest.mark.django_db(transaction=True)

GRACE = dt.timedelta(seconds=60)
NOW = T0 + dt.timedelta(days=4)  # the pairs tests' clock: before quick_start's deadline


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


# --- Threads and waiting ------------------------------------------------------------------


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


def _join(runs: Sequence[tuple[threading.Thread, list[BaseException]]]) -> None:
    for thread, _ in runs:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a worker thread did not finish"
    assert [errors for _, errors in runs] == [[] for _ in runs]


def _waiting_sessions() -> int:
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL keeps showing the activity it read first.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        # Only this database's sessions: other test runs may share the server.
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        (count,) = cursor.fetchone()
    return int(count)


def _until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)  # a polling interval, not an ordering


# --- Fixtures -----------------------------------------------------------------------------


@pytest.fixture
def wakeups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the broker out of tests that drive the evaluator themselves."""
    monkeypatch.setattr("milestones.tasks.evaluate_task.delay", lambda *a, **k: None)
    monkeypatch.setattr("milestones.tasks.backfill_run_task.delay", lambda *a, **k: None)


@pytest.fixture
def published() -> Iterator[list[OutcomeRecord]]:
    """Outcomes handed on after commit, from whichever thread committed them."""
    seen: list[OutcomeRecord] = []

    def receiver(sender: Any, outcomes: list[OutcomeRecord], **kwargs: Any) -> None:
        seen.extend(outcomes)

    outcomes_recorded.connect(receiver)
    yield seen
    outcomes_recorded.disconnect(receiver)


@pytest.fixture
def source(db: None) -> Source:
    return SourceFactory()


@pytest.fixture(autouse=True)
def _grace(settings: Any) -> None:
    settings.MILESTONES_SWEEP_GRACE_SECONDS = int(GRACE.total_seconds())


def compiled(ids: dict[str, int]) -> dict[str, CompiledVersion]:
    found = registry()
    return {key: found.versions[version_id] for key, version_id in ids.items()}


def outcome_ids() -> list[int]:
    return sorted(MilestoneOutcome.objects.values_list("pk", flat=True))


# --- Two workers on the same pairs --------------------------------------------------------


@pytest.mark.usefixtures("wakeups")
@pytest.mark.parametrize("rows_exist", [False, True], ids=["new-rows", "existing-rows"])
def test_a_second_worker_on_the_same_pairs_waits_for_the_first_and_records_nothing_more(
    rows_exist: bool,
    published: list[OutcomeRecord],
    source: Source,
) -> None:
    # given: 20 customers whose history achieves busy_week and big_spender
    ids = milestones_activate(["busy_week", "big_spender"])
    customers = customers_bulk(20, T0)
    users = [c.external_id or "" for c in customers]
    deliver(source.pk, [Call(f"a-{u}", u, REPORT, T0 + hours(1)) for u in users], NOW)
    pairs = [(version, c.pk) for version in ids.values() for c in customers]
    if rows_exist:
        with transaction.atomic():
            pairs_evaluate(pairs, now=NOW)
        assert set(Progress.objects.values_list("state", flat=True)) == {"in_progress"}
    rest = [
        *(Call(f"b-{u}-{k}", u, REPORT, T0 + hours(2 + k)) for u in users for k in range(2)),
        *(Call(f"o-{u}", u, ORDER, T0 + hours(5), 150) for u in users),
    ]
    deliver(source.pk, rest, NOW)
    evaluated = threading.Event()
    summaries: dict[str, Summary] = {}

    def first() -> None:
        with transaction.atomic():
            summaries["first"] = pairs_evaluate(pairs, now=NOW)
            evaluated.set()
            _until(lambda: _waiting_sessions() == 1, "the second worker waits for the first")

    def second() -> None:
        assert evaluated.wait(timeout=20)
        with transaction.atomic():
            summaries["second"] = pairs_evaluate(pairs, now=NOW)

    # when: the second worker evaluates the same pairs while the first has not committed
    _join([_in_thread(first), _in_thread(second)])

    # then: one outcome per pair, from the first worker; the second found them achieved
    assert (summaries["first"].achieved, summaries["second"].achieved) == (40, 0)
    assert summaries["second"].missed == 0
    outcomes = sorted(MilestoneOutcome.objects.values_list("version_id", "subject_id", "kind"))
    assert outcomes == sorted((version, subject, "achieved") for version, subject in pairs)
    achieved = dict(Progress.objects.values_list("definition__key", "achieved_at").distinct())
    assert achieved == {"busy_week": T0 + hours(3), "big_spender": T0 + hours(5)}
    assert sorted(record.id for record in published) == outcome_ids()


@pytest.mark.usefixtures("wakeups")
def test_two_workers_racing_over_overlapping_batches_of_200_customers_lose_and_double_nothing(
    published: list[OutcomeRecord], source: Source
) -> None:
    """Three rounds: new rows, existing rows after more events, and nothing new. Each round
    one worker takes customers 0-149 and the other 50-199 (in the reverse order), both
    starting together. No deadline passes, and later rounds deliver only later events, so
    the from-scratch answer does not depend on which worker saw what first."""
    versions = compiled(milestones_activate())
    customers = customers_bulk(200, T0)
    history = histories(
        [c.external_id or "" for c in customers], T0, NOW - T0 - hours(1), random.Random(11)
    )
    middle = T0 + dt.timedelta(days=2)
    rounds = [
        [call for call in history if call.at < middle],
        [call for call in history if call.at >= middle],
        [],
    ]
    delivered: list[Call] = []
    recorded: list[int] = []
    for calls in rounds:
        # given
        for batch in chunks(calls, 4):
            deliver(source.pk, batch, NOW)
        delivered += calls
        ready = threading.Barrier(2)
        summaries: list[Summary] = []
        pairs = [[(v.id, c.pk) for v in versions.values() for c in customers[:150]]]
        pairs.append([(v.id, c.pk) for v in versions.values() for c in customers[50:]][::-1])

        # when
        _join([_in_thread(partial(racer, ready, chosen, summaries)) for chosen in pairs])

        # then: exactly the from-scratch rows and outcomes, each outcome counted once
        rows, outcomes = expected_state(versions, customers, delivered, now=NOW, grace=GRACE)
        assert progress_state() == rows
        assert outcome_state() == outcomes
        new = len(outcomes) - len(recorded)
        assert sum(s.achieved + s.missed for s in summaries) == new
        recorded = outcome_ids()
    assert len(recorded) > 200  # the history achieves plenty
    assert sorted(record.id for record in published) == recorded
    assert not Progress.objects.filter(state="missed").exists()


def racer(ready: threading.Barrier, pairs: list[Pair], summaries: list[Summary]) -> None:
    with transaction.atomic():
        ready.wait(timeout=20)
        summaries.append(pairs_evaluate(pairs, now=NOW))


# --- Real Celery workers fed by concurrent ingest -----------------------------------------


@pytest.fixture
def evaluate_queue_empty() -> None:
    """Wake-ups left on the shared broker by earlier tests are not this test's work."""
    with app.connection_for_write() as broker:
        broker.default_channel.queue_purge("evaluate")


def test_two_celery_workers_fed_by_concurrent_ingest_record_every_outcome_exactly_once(
    monkeypatch: pytest.MonkeyPatch,
    published: list[OutcomeRecord],
    source: Source,
    evaluate_queue_empty: None,
) -> None:
    # given: every milestone, a stage that follows busy_week, and 120 customers
    monkeypatch.setattr("milestones.tasks.backfill_run_task.delay", lambda *a, **k: None)
    versions = compiled(milestones_activate())
    LifecycleStage.objects.create(
        key="engaged",
        name="Engaged",
        priority=10,
        rules=[{"milestone": "busy_week", "state": "achieved"}],
    )
    start = timezone.now() - dt.timedelta(days=3)
    customers = customers_bulk(120, start - hours(1))
    rng = random.Random(5)
    history = histories([c.external_id or "" for c in customers], start, hours(70), rng)
    deliveries = [*history, *rng.sample(history, len(history) // 8)]  # replays
    rng.shuffle(deliveries)
    parts = [batches[i::4] for batches in [chunks(deliveries, 32)] for i in range(4)]
    failures: list[str] = []

    def on_failure(sender: Any = None, exception: BaseException | None = None, **kw: Any) -> None:
        failures.append(f"{getattr(sender, 'name', sender)}: {exception!r}")

    task_failure.connect(on_failure, weak=False)

    # when: four clients send their batches at once while two workers drain the evaluate
    # queue, and the beat starts the subjects that no event started
    try:
        # One worker, two threads: two embedded workers in one process would share Celery's
        # global shutdown flag, and the second to stop could miss it.
        with start_worker(
            app,
            queues=["evaluate"],
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            shutdown_timeout=30,
        ):
            senders = [
                _in_thread(lambda part=part: [deliver(source.pk, b, timezone.now()) for b in part])
                for part in parts
            ]
            _join(senders)
            progress_start_task()  # the beat's tick: subjects with no event of a milestone yet
            _until(lambda: not PendingEvaluation.objects.exists(), "the workers drain", 90)
    finally:
        task_failure.disconnect(on_failure)

    # then: no task failed, each message was stored once, nothing is left pending (the wait),
    # and the rows and outcomes are the from-scratch ones
    assert failures == []
    assert stored_calls() == as_stored(history)
    customers = list(Customer.objects.order_by("pk"))
    rows, outcomes = expected_state(versions, customers, history, now=timezone.now(), grace=GRACE)
    stored = progress_state()
    assert stored.keys() == rows.keys()
    # Exact achieved_at under any delivery order is the property test's job: here the order
    # of concurrent batches is up to the scheduler, so only its bounds are checked.
    assert {k: without_achieved_at(v) for k, v in stored.items()} == {
        k: without_achieved_at(v) for k, v in rows.items()
    }
    found = outcome_state()
    assert [(k, u, kind, late) for k, u, kind, late, _ in found] == [
        (k, u, kind, late) for k, u, kind, late, _ in outcomes
    ]
    assert {kind for _, _, kind, _, _ in found} == {"achieved"}  # no deadline has passed
    for key, user, _, _, at in found:
        earliest = rows[(key, user)].achieved_at
        assert earliest is not None
        assert earliest <= at == stored[(key, user)].achieved_at, (key, user)
    assert sorted(record.id for record in published) == outcome_ids()
    achievers = sorted(u for k, u, kind, _, _ in outcomes if (k, kind) == ("busy_week", "achieved"))
    engaged = Customer.objects.filter(lifecycle_stage="engaged").order_by("external_id")
    assert list(engaged.values_list("external_id", flat=True)) == achievers
    changes = StageChange.objects.order_by("customer__external_id")
    assert list(changes.values_list("customer__external_id", "to_stage")) == [
        (u, "engaged") for u in achievers
    ]


def without_achieved_at(row: Judged) -> tuple[Any, ...]:
    return (row.state, row.missed_at, row.is_late, row.done, row.total)


# --- The missed sweep racing the evaluator ------------------------------------------------


DEADLINE = T0 + dt.timedelta(days=5)  # quick_start: two reports within five days of signup
JUST_LATE = DEADLINE + dt.timedelta(seconds=10)
AFTER = DEADLINE + dt.timedelta(minutes=2)  # past the deadline and its 60 s grace


def _deadline_groups(source: Source) -> dict[str, list[Customer]]:
    """Thirty customers in each group, all with one report evaluated on the first day:

    - ``on_time``: their second report, an hour before the deadline, is stored and pending;
    - ``never``: nothing more the milestone reads (no pending evaluation: the sweep's to miss);
    - ``pending_short``: a report from before their signup is pending; it does not count;
    - ``just_late``: their second report, 10 s after the deadline, was evaluated within the
      grace (not yet missed, not counted); the miss must bring its late achievement.
    """
    milestones_activate(["quick_start"])
    customers = customers_bulk(120, T0)
    groups = {
        name: customers[30 * n : 30 * (n + 1)]
        for n, name in enumerate(("on_time", "never", "pending_short", "just_late"))
    }

    def report(prefix: str, customer: Customer, at: dt.datetime) -> Call:
        return Call(f"{prefix}-{customer.external_id}", customer.external_id or "", REPORT, at)

    with time_machine.travel(T0 + hours(1), tick=False):
        deliver(source.pk, [report("1", c, T0 + hours(1)) for c in customers], T0 + hours(1))
        while pending_evaluate().pairs:
            pass
    with time_machine.travel(DEADLINE - hours(1), tick=False):
        before = [
            *(report("2", c, DEADLINE - hours(1)) for c in groups["on_time"]),
            *(report("0", c, T0 - hours(1)) for c in groups["pending_short"]),
            *(
                Call(f"s-{c.external_id}", c.external_id or "", SESSION, DEADLINE - hours(1))
                for c in groups["never"]
            ),
        ]
        deliver(source.pk, before, DEADLINE - hours(1))
    with time_machine.travel(JUST_LATE + dt.timedelta(seconds=10), tick=False):
        reports = [report("2", c, JUST_LATE) for c in groups["just_late"]]
        deliver(source.pk, reports, JUST_LATE + dt.timedelta(seconds=10))
        pending = PendingEvaluation.objects.filter(
            subject_id__in=[c.pk for c in groups["just_late"]]
        )
        pairs = list(pending.values_list("version_id", "subject_id"))
        pending.delete()
        with transaction.atomic():
            assert pairs_evaluate(pairs).pairs == 30
    assert PendingEvaluation.objects.count() == 60
    return groups


def _assert_deadline_outcomes(
    groups: dict[str, list[Customer]], published: list[OutcomeRecord]
) -> None:
    users = {c.pk: name for name, members in groups.items() for c in members}
    outcomes = collections.Counter(
        (users[subject], kind, is_late, at)
        for subject, kind, is_late, at in MilestoneOutcome.objects.values_list(
            "subject_id", "kind", "is_late", "occurred_at"
        )
    )
    assert outcomes == {
        ("on_time", "achieved", False, DEADLINE - hours(1)): 30,
        ("never", "missed", False, DEADLINE): 30,
        ("pending_short", "missed", False, DEADLINE): 30,
        ("just_late", "missed", False, DEADLINE): 30,
        ("just_late", "achieved", True, JUST_LATE): 30,
    }
    states = collections.Counter(
        (users[subject], state)
        for subject, state in Progress.objects.values_list("subject_id", "state")
    )
    assert states == {
        ("on_time", "achieved"): 30,
        ("never", "missed"): 30,
        ("pending_short", "missed"): 30,
        ("just_late", "achieved"): 30,
    }
    assert not PendingEvaluation.objects.exists()
    assert sorted(record.id for record in published) == outcome_ids()


def _drain() -> None:
    while pending_evaluate(limit=7).pairs:
        pass


def _sweep() -> None:
    while not sweep.deadlines_sweep(batch=7).is_done:
        pass


@pytest.mark.usefixtures("wakeups")
@pytest.mark.parametrize("holding", ["evaluator", "sweep"])
def test_a_sweep_and_an_evaluation_overlapping_either_way_give_each_subject_its_outcome(
    holding: str, published: list[OutcomeRecord], source: Source
) -> None:
    # given
    groups = _deadline_groups(source)
    started, done = threading.Event(), threading.Event()

    def holder() -> None:
        # One transaction does all its work and stays open until the other has run.
        with transaction.atomic():
            _drain() if holding == "evaluator" else sweep.deadlines_sweep(batch=1000)
            started.set()
            _until(lambda: done.is_set() or _waiting_sessions() > 0, "the other side has run")

    def other() -> None:
        assert started.wait(timeout=20)
        _sweep() if holding == "evaluator" else _drain()
        done.set()

    # when
    with time_machine.travel(AFTER, tick=True):
        _join([_in_thread(holder), _in_thread(other)])
        # then: what the sweep queued (just_late) takes one more round, and then nothing is left
        _drain()
        assert sweep.deadlines_sweep().missed == 0
        assert pending_evaluate().pairs == 0

    # and: each subject has exactly its outcome
    _assert_deadline_outcomes(groups, published)


@pytest.mark.usefixtures("wakeups")
def test_two_sweeps_and_two_evaluators_racing_give_each_subject_exactly_its_outcome(
    published: list[OutcomeRecord], source: Source
) -> None:
    # given
    groups = _deadline_groups(source)
    ready = threading.Barrier(4)

    def run(work: Callable[[], None]) -> Callable[[], None]:
        def go() -> None:
            ready.wait(timeout=20)
            work()

        return go

    # when
    with time_machine.travel(AFTER, tick=True):
        _join([_in_thread(run(work)) for work in (_drain, _sweep, _drain, _sweep)])
        _drain()  # the round that follows the sweep's wake-up

    # then
    _assert_deadline_outcomes(groups, published)


def test_a_stage_refresh_that_waited_for_a_lock_sees_what_the_holder_committed(
    source: Source,
) -> None:
    # given: a stage that follows busy_week, and a customer whose history achieves it
    ids = milestones_activate(["busy_week"])
    LifecycleStage.objects.create(
        key="engaged", name="Engaged", priority=10,
        rules=[{"milestone": "busy_week", "state": "achieved"}],
    )  # fmt: skip
    (customer,) = customers_bulk(1, T0)
    user = customer.external_id or ""
    deliver(
        source.pk, [Call(f"r-{user}-{k}", user, REPORT, T0 + hours(1 + k)) for k in range(3)], NOW
    )
    evaluated = threading.Event()

    def evaluator() -> None:
        # achieves busy_week and stages the customer "engaged", then holds the lock a while
        with transaction.atomic():
            assert pairs_evaluate([(ids["busy_week"], customer.pk)], now=NOW).achieved == 1
            evaluated.set()
            _until(lambda: _waiting_sessions() == 1, "the refresh waits for the lock")

    def refresher() -> None:
        # a sweep's refresh of every stage rule, started while the evaluator holds the lock
        assert evaluated.wait(timeout=20)
        with transaction.atomic():
            stages_refresh([customer.pk], active_versions={ids["busy_week"]: "busy_week"},
                           cause="sweep")  # fmt: skip

    # when
    _join([_in_thread(evaluator), _in_thread(refresher)])

    # then: the refresh read the achievement after the lock, so it kept the stage
    customer.refresh_from_db()
    assert customer.lifecycle_stage == "engaged"
    assert list(StageChange.objects.values_list("to_stage", flat=True)) == ["engaged"]
