"""The journey dry run: who would have entered over the last hours (entry rules, re-entry,
holdout exactly as ``enroll`` judges them) and what their first run would send, through the
real delivery policy, writing nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, cast

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from consent.models import Topic
from consent.services import Evidence, subscription_set
from customers.models import Customer, Event
from journeys.dryrun import (
    ALREADY_ENTERED,
    HELD_OUT,
    INELIGIBLE,
    WOULD_ENTER,
    Candidate,
    JourneyDryRun,
    Plan,
    PlannedMessage,
    journey_dry_run,
)
from journeys.enrollment import Entry, enroll
from journeys.graph import Variant, split_variant
from journeys.models import Enrollment, Journey, JourneyChange, JourneyVersion, StepRun
from journeys.services import JourneyInvalid, journey_go_live, journey_save
from messaging import reasons
from messaging.explain import reason_sentence
from messaging.models import FrequencyCap, Message
from milestones.models import (
    MilestoneDefinition,
    MilestoneOutcome,
    OutcomeKind,
    StageChange,
    Unit,
)
from tests.factories import CustomerFactory, EventFactory
from tests.journeys.conftest import MISSED

pytestmark = pytest.mark.django_db


def _customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))  # type: ignore[no-untyped-call]


def _event(**fields: Any) -> Event:
    return cast(Event, EventFactory(**fields))  # type: ignore[no-untyped-call]


NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
SEND_WAIT_EXIT: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit"},
]
QUEUED_SMS = PlannedMessage("nudge", ("setup-help",), "queued", "sms", "", "Would go by SMS.")
Outcome = Callable[..., MilestoneOutcome]


def _journey(steps: list[dict[str, Any]] | None = None, **fields: Any) -> Journey:
    values: dict[str, Any] = {
        "name": "Setup nudge",
        "trigger": MISSED,
        "steps": steps or SEND_WAIT_EXIT,
        "entry_rules": {"plans": ["pro"]},
    }
    return journey_save(key=fields.pop("key", "setup-nudge"), **{**values, **fields})


@pytest.fixture
def outcome(ready: None) -> Outcome:
    definition = MilestoneDefinition.objects.get(key="activated")

    def make(customer: Customer, ago: dt.timedelta, kind: str = OutcomeKind.MISSED) -> Any:
        assert definition.active_version is not None
        return MilestoneOutcome.objects.create(
            version=definition.active_version, definition=definition, unit=Unit.CUSTOMER,
            subject_id=customer.pk, kind=kind, occurred_at=NOW - ago,
        )  # fmt: skip

    return make


def _pro(**fields: Any) -> Customer:
    values: dict[str, Any] = {"plan": "pro", "phone": "+14155550100", **fields}
    return _customer(**values)


def _counts() -> dict[str, int]:
    models: list[type[Model]] = [
        Journey, JourneyVersion, JourneyChange, Enrollment, StepRun, Message, Customer,
    ]  # fmt: skip
    return {model.__name__: model._default_manager.count() for model in models}


def _entered(result: JourneyDryRun) -> tuple[int, list[tuple[int, str]]]:
    return result.triggers, [(c.customer_id, c.entry_key) for c in result.samples[WOULD_ENTER]]


def _buckets(result: JourneyDryRun) -> dict[str, list[int]]:
    return {bucket: [c.customer_id for c in found] for bucket, found in result.samples.items()}


def test_it_sorts_the_last_days_triggers_and_plans_each_entrants_messages(
    outcome: Outcome,
) -> None:
    # given
    journey = _journey()
    ada, dee = _pro(), _pro(phone="")
    bob = _customer(plan="free", phone="+14155550101")
    old = _pro()
    entered = [outcome(ada, 2 * HOUR), outcome(bob, 3 * HOUR), outcome(dee, 4 * HOUR)]
    outcome(old, 30 * HOUR)  # before the window
    outcome(_pro(), HOUR, kind=OutcomeKind.ACHIEVED)  # not what the journey is triggered by

    # when
    result = journey_dry_run(journey=journey, now=NOW)

    # then
    assert (result.since, result.until, result.triggers, result.is_truncated) == (
        NOW - 24 * HOUR,
        NOW,
        3,
        False,
    )
    assert result.counts == {WOULD_ENTER: 2, HELD_OUT: 0, INELIGIBLE: 1, ALREADY_ENTERED: 0}
    unreachable = reason_sentence(reasons.UNREACHABLE)
    plan = Plan(("nudge", "pause"), "waits at “pause” for 2 days", (QUEUED_SMS,))
    # (oldest trigger first)
    assert result.samples[WOULD_ENTER] == [
        Candidate(
            dee.pk,
            f"outcome:{entered[2].pk}",
            NOW - 4 * HOUR,
            WOULD_ENTER,
            Plan(
                ("nudge", "pause"),
                "waits at “pause” for 2 days",
                (
                    PlannedMessage(
                        "nudge", ("setup-help",), "suppressed", "", reasons.UNREACHABLE,
                        unreachable,
                    ),
                ),
            ),
        ),
        Candidate(ada.pk, f"outcome:{entered[0].pk}", NOW - 2 * HOUR, WOULD_ENTER, plan),
    ]  # fmt: skip
    assert result.samples[INELIGIBLE] == [
        Candidate(bob.pk, f"outcome:{entered[1].pk}", NOW - 3 * HOUR, INELIGIBLE)
    ]
    assert dict(result.deliveries) == {
        ("queued", "sms", ""): 1,
        ("suppressed", "", reasons.UNREACHABLE): 1,
    }
    assert unreachable == (
        "No address on this channel: no email address, no phone number or no active device."
    )


def test_it_writes_nothing(outcome: Outcome) -> None:
    # given
    journey = _journey()
    for _ in range(3):
        outcome(_pro(), HOUR)
    before = _counts()

    # when
    with CaptureQueriesContext(connection) as queries:
        result = journey_dry_run(journey=journey, now=NOW)

    # then
    assert result.counts[WOULD_ENTER] == 3
    assert _counts() == before
    writes = [
        q["sql"] for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "SELECT PG_"))
        or "FOR UPDATE" in q["sql"].upper()
    ]  # fmt: skip
    assert writes == []


def test_it_predicts_exactly_who_enroll_lets_in_and_holds_out(outcome: Outcome) -> None:
    # given: the working copy is the live version
    journey = _journey(holdout_percent=50)
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    customers = [_pro() for _ in range(20)]
    outcomes = [outcome(customer, HOUR) for customer in customers]

    # when
    result = journey_dry_run(journey=journey, now=NOW, sample_size=20)
    made = enroll(
        [Entry(o.subject_id, "milestone_missed", "activated", f"outcome:{o.pk}", o.occurred_at)
         for o in outcomes],
        now=NOW,
    )  # fmt: skip

    # then
    states = {e.customer_id: e.state for e in made}
    assert _buckets(result) == {
        WOULD_ENTER: [c.pk for c in customers if states[c.pk] == "active"],
        HELD_OUT: [c.pk for c in customers if states[c.pk] == "holdout"],
        INELIGIBLE: [],
        ALREADY_ENTERED: [],
    }
    assert 0 < result.counts[HELD_OUT] < 20
    assert all(c.plan is None for c in result.samples[HELD_OUT])


def test_a_trigger_that_already_enrolled_and_the_reentry_policy_count_as_already_entered(
    outcome: Outcome,
) -> None:
    # given
    journey = _journey(reentry="after_days", reentry_days=7)
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    enrolled, recent, long_ago = _pro(), _pro(), _pro()
    already = outcome(enrolled, 5 * HOUR)
    enroll([Entry(enrolled.pk, "milestone_missed", "activated", f"outcome:{already.pk}",
                  already.occurred_at)], now=NOW - 5 * HOUR)  # fmt: skip
    enroll([Entry(recent.pk, "milestone_missed", "activated", "outcome:old-1", NOW)],
           now=NOW - 3 * DAY)  # fmt: skip
    enroll([Entry(long_ago.pk, "milestone_missed", "activated", "outcome:old-2", NOW)],
           now=NOW - 10 * DAY)  # fmt: skip
    outcome(recent, 2 * HOUR)
    again = outcome(long_ago, HOUR)

    # when
    result = journey_dry_run(journey=journey, now=NOW)

    # then
    assert _buckets(result) == {
        WOULD_ENTER: [long_ago.pk],
        HELD_OUT: [],
        INELIGIBLE: [],
        ALREADY_ENTERED: [enrolled.pk, recent.pk],
    }
    assert result.samples[WOULD_ENTER][0].entry_key == f"outcome:{again.pk}"


def test_a_second_trigger_in_the_window_finds_the_customer_already_entered(
    ready: None,
) -> None:
    journey = _journey(key="reports", trigger={"kind": "event", "event": "Report Created"})
    ada = _pro()
    first = _event(customer=ada, name="Report Created", occurred_at=NOW - 3 * HOUR)
    second = _event(customer=ada, name="Report Created", occurred_at=NOW - HOUR)

    result = journey_dry_run(journey=journey, now=NOW)

    assert [(c.bucket, c.entry_key) for c in [*result.samples[WOULD_ENTER],
                                              *result.samples[ALREADY_ENTERED]]] == [
        (WOULD_ENTER, f"event:{first.pk}"),
        (ALREADY_ENTERED, f"event:{second.pk}"),
    ]  # fmt: skip


def test_event_triggers_match_name_and_filters_and_stage_triggers_read_stage_changes(
    ready: None,
) -> None:
    # given
    events = _journey(
        key="reports",
        trigger={"kind": "event", "event": "Report Created",
                 "filters": [{"property": "pages", "op": "gte", "value": 2}]},
    )  # fmt: skip
    stages = _journey(key="at-risk", trigger={"kind": "stage_changed", "to": "at_risk"})
    ada, bob, cy = _pro(), _pro(), _pro()
    big = _event(customer=ada, name="Report Created", properties={"pages": 3},
                       occurred_at=NOW - HOUR)  # fmt: skip
    _event(customer=bob, name="Report Created", properties={"pages": 1},
                 occurred_at=NOW - HOUR)  # fmt: skip
    _event(customer=bob, name="Report Viewed", properties={"pages": 9},
                 occurred_at=NOW - HOUR)  # fmt: skip
    moved = StageChange.objects.create(customer=cy, from_stage="active", to_stage="at_risk",
                                       changed_at=NOW - 2 * HOUR)  # fmt: skip
    StageChange.objects.create(customer=ada, from_stage="new", to_stage="active",
                               changed_at=NOW - HOUR)  # fmt: skip

    # when
    by_event = journey_dry_run(journey=events, now=NOW)
    by_stage = journey_dry_run(journey=stages, now=NOW)

    # then
    assert Event.objects.count() == 3
    key = f"stage:{cy.pk}:at_risk:{moved.changed_at.isoformat()}"
    assert _entered(by_event) == (1, [(ada.pk, f"event:{big.pk}")])
    assert _entered(by_stage) == (1, [(cy.pk, key)])


def test_the_first_run_follows_branches_and_splits_and_lists_notices(outcome: Outcome) -> None:
    # given
    steps: list[dict[str, Any]] = [
        {"key": "pick", "type": "branch", "branches": [
            {"when": {"trait": "seats", "op": "gte", "value": 5}, "next": "ab"}],
         "else": "done"},
        {"key": "ab", "type": "split", "variants": [
            {"name": "A", "weight": 1, "next": "nudge"},
            {"name": "B", "weight": 1, "next": "mark"}]},
        {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "mark"},
        {"key": "mark", "type": "update", "set_stage": "engaged", "next": "owner"},
        {"key": "owner", "type": "notify", "to": "account_owner", "template": "owner-alert",
         "next": "hold"},
        {"key": "hold", "type": "wait", "until": {"milestone": "activated", "state": "achieved"},
         "timeout": {"days": 3, "hours": 4}, "timeout_next": "done", "next": "done"},
        {"key": "done", "type": "exit", "outcome": "exited"},
    ]  # fmt: skip
    journey = _journey(steps)
    big, small = _pro(traits={"seats": 9}), _pro(traits={"seats": 1})
    outcome(big, HOUR)
    outcome(small, 2 * HOUR)
    variant = split_variant(
        "setup-nudge", "ab", big.pk, (Variant("A", 1, "nudge"), Variant("B", 1, "mark"))
    )

    # when
    result = journey_dry_run(journey=journey, now=NOW)

    # then
    sends = (QUEUED_SMS,) if variant.name == "A" else ()
    waits = "waits at “hold” for milestone “activated” achieved, at most 3 days 4 hours"
    notice = "“owner” notifies account_owner with template “owner-alert”"
    assert [c.plan for c in result.samples[WOULD_ENTER]] == [
        Plan(("pick", "done"), "ends at “done” (exited)", ()),
        Plan(
            ("pick", "ab", *(("nudge",) if sends else ()), "mark", "owner", "hold"),
            waits,
            sends,
            (notice,),
        ),
    ]


def test_sends_of_one_run_compete_for_cap_slots_and_consent_is_explained(
    outcome: Outcome,
) -> None:
    # given
    steps: list[dict[str, Any]] = [
        {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "again"},
        {"key": "again", "type": "send", "templates": ["setup-help"], "next": "done"},
        {"key": "done", "type": "exit"},
    ]
    journey = _journey(steps)
    FrequencyCap.objects.create(name="daily", scope="marketing", limit=1, window=DAY)
    capped, refused = _pro(), _pro()
    subscription_set(customer_id=refused.pk, channel="sms", topic_keys=["tips"],
                     status="opted_out", evidence=Evidence(source="api"))  # fmt: skip
    outcome(capped, HOUR)
    outcome(refused, 2 * HOUR)

    # when
    result = journey_dry_run(journey=journey, now=NOW)

    # then
    refused_plan, capped_plan = (c.plan for c in result.samples[WOULD_ENTER])
    assert capped_plan is not None
    assert refused_plan is not None
    assert capped_plan.messages == (
        QUEUED_SMS,
        PlannedMessage(
            "again", ("setup-help",), "suppressed", "", reasons.FREQUENCY_CAP,
            "A frequency cap was full: “daily” already held 1 of its 1 messages in its window.",
        ),
    )  # fmt: skip
    no_consent = (
        "No consent for this topic on this channel (status: opted out; an opt-out region: "
        "marketing until the customer opts out)."
    )
    assert [(m.reason, m.sentence) for m in refused_plan.messages] == [
        (reasons.NO_CONSENT, no_consent),
        (reasons.NO_CONSENT, no_consent),
    ]
    assert Topic.objects.get(key="tips").is_transactional is False


def test_a_missing_template_is_reported_not_raised(outcome: Outcome) -> None:
    steps = [{**SEND_WAIT_EXIT[0], "templates": ["win-back"]}, *SEND_WAIT_EXIT[1:]]
    journey = _journey(steps)
    outcome(_pro(), HOUR)

    result = journey_dry_run(journey=journey, now=NOW)

    (candidate,) = result.samples[WOULD_ENTER]
    assert candidate.plan is not None
    assert candidate.plan.messages == (
        PlannedMessage(
            "nudge", ("win-back",), "refused", "", "",
            "Template “win-back” does not exist: nothing would be sent at this step.",
        ),
    )  # fmt: skip
    assert dict(result.deliveries) == {("refused", "", ""): 1}


def test_it_stops_at_the_limit_and_says_so(outcome: Outcome) -> None:
    journey = _journey()
    customers = [_pro() for _ in range(3)]
    for number, customer in enumerate(customers):
        outcome(customer, (number + 1) * HOUR)

    result = journey_dry_run(journey=journey, now=NOW, limit=2, hours=6)

    assert (result.triggers, result.is_truncated) == (2, True)
    assert _buckets(result)[WOULD_ENTER] == [customers[2].pk, customers[1].pk]


def test_an_invalid_working_copy_is_refused(ready: None) -> None:
    journey = _journey()
    Journey.objects.filter(pk=journey.pk).update(steps=[{"key": "x", "type": "exit"}, 5])
    journey.refresh_from_db()

    with pytest.raises(JourneyInvalid) as caught:
        journey_dry_run(journey=journey, now=NOW)

    assert str(caught.value) == "steps$[1]: must be a step object"
