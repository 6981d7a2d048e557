"""The evaluator under the conditions real tracking produces, property-based: shuffled, late,
replayed and batched delivery ends exactly where a from-scratch evaluation of the stored
history does; evaluating again changes nothing.

The rule for deadlines, chosen so that "from scratch" has one answer: every batch is
delivered and evaluated within the grace period of every deadline (the grace is set to 30
days), so the evaluator judges on-time achievement with the deadline as the end of the range
but records no miss while events are still arriving; the clock then jumps past every
deadline plus grace and the beat work runs (start, evaluate, sweep). A deadline judged while
on-time events are still in flight legitimately ends differently (missed, then achieved
late: outcomes are never retracted); the pinned tests at the end and ``test_evaluation.py``
cover that. The oracle is ``tests.milestones.oracle.judge``, which states the contract
in its docstring.

The generated milestones are the shapes whose answer more history can only bring forward:
positive amounts, signup anchors, and an event anchor without a window. (With a refund, or
an event anchor that also sets a deadline, an event arriving late can undo an answer that was
already handed on as an outcome; that is by design and not an order dependence to test.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
import time_machine
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from customers.models import Customer, Source
from milestones import sweep
from milestones.evaluation import pairs_evaluate, pending_evaluate
from milestones.models import MilestoneOutcome, PendingEvaluation, Progress
from milestones.registry import CompiledVersion, registry
from tests.factories import CustomerFactory, SourceFactory
from tests.milestones.conftest import T0
from tests.milestones.oracle import (
    NAMES,
    ORDER,
    REPORT,
    Call,
    as_stored,
    deliver,
    expected_state,
    full_dump,
    milestones_activate,
    outcome_state,
    progress_state,
    stored_calls,
)

pytestmark = pytest.mark.django_db

GRACE = dt.timedelta(days=30)
FINAL = T0 + dt.timedelta(days=60)  # past every deadline plus grace
SLOT = dt.timedelta(hours=6)  # events fall on a 6-hour grid, so many are simultaneous
#: user -> (IANA zone, signup): local days differ between them, and one signs up a day late.
USERS = {
    "ada": ("UTC", T0),
    "bo": ("America/New_York", T0 + dt.timedelta(days=1, hours=5)),
    "cy": ("Asia/Tokyo", T0 - dt.timedelta(hours=20)),
}


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


# --- Scenarios ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    calls: tuple[Call, ...]
    delay_minutes: int  # after the latest event delivered so far
    then: str  # "nothing" | "one_claim" | "drain" | "sweep"


@dataclasses.dataclass(frozen=True)
class Scenario:
    users: tuple[str, ...]
    history: tuple[Call, ...]  # each message once
    steps: tuple[Step, ...]  # the history shuffled, with replays, in batches


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    users = tuple(sorted(draw(st.sets(st.sampled_from(sorted(USERS)), min_size=1))))
    # Each user's own history, so that every user has enough events to achieve something.
    event = st.tuples(
        st.sampled_from(NAMES),
        st.integers(min_value=-4, max_value=56),  # one day before T0 to two weeks after
        st.integers(min_value=5, max_value=90),
    )
    drawn = [
        (user, *fields)
        for user in users
        for fields in draw(st.lists(event, min_size=3, max_size=12))
    ]
    drawn = draw(st.permutations(drawn))  # message ids do not follow users or time
    history = tuple(
        Call(f"m{i}", user, name, T0 + slot * SLOT, amount if name == ORDER else None)
        for i, (user, name, slot, amount) in enumerate(drawn)
    )
    replays = draw(st.lists(st.sampled_from(history), max_size=len(history)))
    delivered = draw(st.permutations([*history, *replays]))
    pieces = draw(st.integers(min_value=2, max_value=min(7, len(delivered))))
    cuts = draw(
        st.lists(
            st.integers(1, len(delivered) - 1),
            min_size=pieces - 1,
            max_size=pieces - 1,
            unique=True,
        )
    )
    bounds = [0, *sorted(cuts), len(delivered)]
    steps = tuple(
        Step(
            tuple(delivered[start:stop]),
            draw(st.integers(min_value=0, max_value=240)),
            draw(st.sampled_from(("nothing", "one_claim", "drain", "sweep"))),
        )
        for start, stop in itertools.pairwise(bounds)
        if stop > start
    )
    return Scenario(users, history, steps)


# --- Running a scenario -------------------------------------------------------------------


def drain() -> None:
    while pending_evaluate().pairs:
        pass


def beat() -> None:
    """What the beat schedule and the woken workers do: start subjects, evaluate, sweep."""
    sweep.progress_start()
    drain()
    sweep.deadlines_sweep()
    drain()


def customers_create(users: Sequence[str]) -> list[Customer]:
    return [
        CustomerFactory(
            external_id=user,
            time_zone=USERS[user][0],
            created_at=USERS[user][1],
            first_seen=USERS[user][1],
            last_seen=USERS[user][1],
        )
        for user in users
    ]


def play(source: Source, scenario: Scenario) -> None:
    """Deliver each batch when its latest event has happened (plus a delay), then act."""
    clock = T0 - dt.timedelta(days=1)
    for step in scenario.steps:
        latest = max(call.at for call in step.calls)
        clock = max(clock, latest) + dt.timedelta(minutes=step.delay_minutes)
        with time_machine.travel(clock, tick=False):
            deliver(source.pk, step.calls, clock)
            if step.then == "one_claim":
                pending_evaluate(limit=2)
            elif step.then == "drain":
                drain()
            elif step.then == "sweep":
                sweep.deadlines_sweep()
        assert clock + GRACE < FINAL


def check_against_scratch(
    source: Source, versions: dict[str, CompiledVersion], scenario: Scenario
) -> None:
    # given: the scenario's customers; when: the history is delivered as the scenario says
    customers = customers_create(scenario.users)
    play(source, scenario)
    with time_machine.travel(FINAL, tick=False):
        beat()

    # then: each message was stored once, and every row and outcome is the from-scratch one
    assert stored_calls() == as_stored(scenario.history)
    rows, outcomes = expected_state(versions, customers, scenario.history, now=FINAL, grace=GRACE)
    assert progress_state() == rows
    assert outcome_state() == outcomes

    # and: a replay of everything, another round and sweep, and evaluating every pair once
    # more change nothing
    before = full_dump()
    later = FINAL + dt.timedelta(days=1)
    with time_machine.travel(later, tick=False):
        assert deliver(source.pk, scenario.history, later).stored == 0
        drain()
        sweep.deadlines_sweep()
        with transaction.atomic():
            pairs_evaluate([(v.id, c.pk) for v in versions.values() for c in customers])
    assert full_dump() == before
    assert not PendingEvaluation.objects.exists()


def test_shuffled_replayed_and_batched_delivery_ends_where_a_from_scratch_evaluation_does(
    settings: Any,
) -> None:
    settings.MILESTONES_SWEEP_GRACE_SECONDS = int(GRACE.total_seconds())
    ids = milestones_activate()
    found = registry()
    versions = {key: found.versions[version_id] for key, version_id in ids.items()}
    source = SourceFactory()

    @hypothesis_settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenario=scenarios())
    def check(scenario: Scenario) -> None:
        # Each example starts from the same empty history and leaves nothing behind.
        with transaction.atomic():
            check_against_scratch(source, versions, scenario)
            transaction.set_rollback(True)

    check()


# --- The cases the property found, pinned -------------------------------------------------


@pytest.fixture
def source() -> Source:
    return SourceFactory()


def test_earlier_events_delivered_after_the_achievement_move_achieved_at_back(
    source: Source,
) -> None:
    """Order independence of ``achieved_at``: from scratch, three reports completed the count
    at T0+2h; delivered the other way round, the first batch's later reports achieved it at
    T0+9h and the earlier ones arrived afterwards."""
    ids = milestones_activate(["busy_week"])
    customers_create(["ada"])
    late = [Call(f"l{i}", "ada", REPORT, T0 + hours(7 + i)) for i in range(3)]
    early = [Call(f"e{i}", "ada", REPORT, T0 + hours(i)) for i in range(3)]
    with time_machine.travel(T0 + hours(10), tick=False):
        deliver(source.pk, late, T0 + hours(10))
        drain()
    with time_machine.travel(T0 + hours(11), tick=False):
        deliver(source.pk, early, T0 + hours(11))
        drain()

    progress = Progress.objects.get()
    outcome = MilestoneOutcome.objects.get()
    assert (progress.version_id, progress.state) == (ids["busy_week"], "achieved")
    assert (progress.achieved_at, outcome.occurred_at) == (T0 + hours(2), T0 + hours(2))


def test_evaluating_a_pair_twice_at_the_same_moment_changes_nothing_after_its_deadline(
    source: Source, settings: Any
) -> None:
    """Idempotence across a deadline: quick_start's second report came an hour after the
    deadline and is stored. The first evaluation after the grace records the miss; it must
    also see the late achievement already in the history, not leave it to a second run."""
    settings.MILESTONES_SWEEP_GRACE_SECONDS = 60
    ids = milestones_activate(["quick_start"])
    ada = CustomerFactory(external_id="ada", created_at=T0)
    deadline = T0 + dt.timedelta(days=5)
    late = deadline + hours(1)
    calls = [Call("r1", "ada", REPORT, T0 + hours(1)), Call("r2", "ada", REPORT, late)]
    deliver(source.pk, calls, late)
    PendingEvaluation.objects.all().delete()
    pair = (ids["quick_start"], ada.pk)

    with time_machine.travel(late + hours(1), tick=False), transaction.atomic():
        first = pairs_evaluate([pair])
        after_first = full_dump()
        second = pairs_evaluate([pair])

    assert (first.missed, first.achieved, second.missed, second.achieved) == (1, 1, 0, 0)
    assert full_dump() == after_first
    assert sorted(MilestoneOutcome.objects.values_list("kind", "is_late", "occurred_at")) == [
        ("achieved", True, late),
        ("missed", False, deadline),
    ]


def test_an_achievement_just_after_the_deadline_is_recorded_late_however_the_sweep_interleaves(
    source: Source, settings: Any
) -> None:
    """Two customers with the same history: one report early on, and the second of quick_start's
    two reports 30 s after the five-day deadline. Bo's was delivered at once and was still
    pending when the sweep ran, so the evaluator judged the deadline; ada's phone sent hers
    minutes later, after the sweep had recorded her miss. Both histories call for the same
    outcomes: missed at the deadline, then achieved late."""
    settings.MILESTONES_SWEEP_GRACE_SECONDS = 60
    milestones_activate(["quick_start"])
    customers = [CustomerFactory(external_id=user, created_at=T0) for user in ("ada", "bo")]
    deadline = T0 + dt.timedelta(days=5)
    with time_machine.travel(T0 + hours(1), tick=False):
        deliver(
            source.pk,
            [Call(f"{user}-1", user, REPORT, T0 + hours(1)) for user in ("ada", "bo")],
            T0 + hours(1),
        )
        drain()
    late = deadline + dt.timedelta(seconds=30)

    # when: bo's late report is stored at once; the sweep and the evaluator run two minutes
    # after the deadline; ada's report arrives three minutes later still
    with time_machine.travel(late, tick=False):
        deliver(source.pk, [Call("bo-2", "bo", REPORT, late)], late)
    with time_machine.travel(deadline + dt.timedelta(minutes=2), tick=False):
        sweep.deadlines_sweep()
        drain()
    with time_machine.travel(deadline + dt.timedelta(minutes=5), tick=False):
        deliver(source.pk, [Call("ada-2", "ada", REPORT, late)], deadline + dt.timedelta(minutes=5))
        drain()

    # then
    users = {customer.pk: customer.external_id for customer in customers}
    outcomes = sorted(
        (users[subject], kind, is_late, at)
        for subject, kind, is_late, at in MilestoneOutcome.objects.values_list(
            "subject_id", "kind", "is_late", "occurred_at"
        )
    )
    assert outcomes == [
        ("ada", "achieved", True, late),
        ("ada", "missed", False, deadline),
        ("bo", "achieved", True, late),
        ("bo", "missed", False, deadline),
    ]
    rows = sorted(Progress.objects.values_list("state", "is_late", "achieved_at", "missed_at"))
    assert rows == [("achieved", True, late, deadline)] * 2


def test_an_event_stamped_a_little_ahead_of_the_server_clock_still_counts(source: Source) -> None:
    """Ingest keeps a timestamp up to five minutes ahead of its clock (client clock skew). The
    batch that completes busy_week carries such an event; once its moment has passed, the
    milestone is achieved at it, however long nothing else arrives."""
    milestones_activate(["busy_week"])
    customers_create(["ada"])
    received = T0 + hours(1)
    ahead = received + dt.timedelta(minutes=2)
    calls = [
        Call("r1", "ada", REPORT, T0),
        Call("r2", "ada", REPORT, T0),
        Call("r3", "ada", REPORT, ahead),
    ]
    with time_machine.travel(received, tick=False):
        deliver(source.pk, calls, received)
        drain()
    with time_machine.travel(received + hours(24), tick=False):
        beat()

    progress = Progress.objects.get()
    assert (progress.state, progress.achieved_at) == ("achieved", ahead)
    assert list(MilestoneOutcome.objects.values_list("kind", "occurred_at")) == [
        ("achieved", ahead)
    ]


def test_a_first_order_delivered_late_moves_an_achievement_without_deadline_back(
    source: Source,
) -> None:
    """after_first_order (two reports within three days, counted from the first order, no
    deadline) was achieved from an order on day 5; then an earlier order with its own two
    reports arrives from day 1. With no deadline, an earlier anchor can only add counted
    events, so nothing already handed on is contradicted: from scratch the milestone was
    achieved on day 1, and so must the row and the outcome say."""
    milestones_activate(["after_first_order"])
    customers_create(["ada"])
    day1, day5 = T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=5)
    recent = [
        Call("o2", "ada", ORDER, day5, 10),
        Call("r3", "ada", REPORT, day5 + hours(1)),
        Call("r4", "ada", REPORT, day5 + hours(2)),
    ]
    earlier = [
        Call("o1", "ada", ORDER, day1, 10),
        Call("r1", "ada", REPORT, day1 + hours(1)),
        Call("r2", "ada", REPORT, day1 + hours(2)),
    ]
    with time_machine.travel(day5 + hours(3), tick=False):
        deliver(source.pk, recent, day5 + hours(3))
        drain()
    with time_machine.travel(day5 + hours(4), tick=False):
        deliver(source.pk, earlier, day5 + hours(4))
        drain()

    progress = Progress.objects.get()
    assert (progress.state, progress.anchor_at, progress.achieved_at) == (
        "achieved",
        day1,
        day1 + hours(2),
    )
    assert list(MilestoneOutcome.objects.values_list("kind", "occurred_at")) == [
        ("achieved", day1 + hours(2))
    ]
