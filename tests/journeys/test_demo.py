"""The journeys demo seed: four live journeys over the milestones demo, the demo customers
whose current state triggers them enrolled (a tenth held out), their first steps taken, and
a second run that changes nothing."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter

import pytest
import time_machine
from django.core.management import CommandError, call_command

from consent.models import Topic
from customers.models import Customer
from journeys.demo import DEMO_KEYS, TEMPLATES
from journeys.graph import is_holdout
from journeys.models import Enrollment, Journey, JourneyChange, JourneyVersion, StepRun, Team
from journeys.runner import step_run_key
from journeys.services import journey_pause, journey_save
from messaging.models import Message, Template, TemplateVersion
from milestones.models import MilestoneOutcome, Progress

pytestmark = pytest.mark.django_db

# The milestones demo test's moment: its figures (16 teams activated, 4 of them late, 12
# still missed, 11 shoppers inside their 45-day window, 6 savers on a 4-week streak) hold.
NOW = dt.datetime(2026, 3, 11, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
#: journey -> (milestone, progress state that enrolls, the wait it stops at, its length,
#: the first send step or "" when the journey starts with a wait)
JOURNEYS = {
    "saas-activated": ("team-activated", "achieved", "three-days", 3 * DAY, "automation-tips"),
    "saas-activation-rescue": ("team-activated", "missed", "two-days", 2 * DAY, "checklist"),
    "shop-second-purchase": ("second-purchase", "in_progress", "ten-days", 10 * DAY, ""),
    "money-streak": ("weekly-spending-check", "achieved", "week-one", 8 * DAY, "premium-insights"),
}


@pytest.fixture
def milestones_demo() -> None:
    # The migrations make the topics; these tests run without them.
    Topic.objects.create(key="marketing", name="News and offers")
    with time_machine.travel(NOW, tick=False):
        call_command("milestones_demo_seed", "--force", stdout=io.StringIO())


def _seed(*args: str) -> list[str]:
    out = io.StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("journeys_demo_seed", *args, stdout=out)
    return out.getvalue().splitlines()


def _in_state(milestone: str, state: str) -> set[int]:
    return set(
        Progress.objects.filter(
            definition__key=milestone, unit="customer", state=state
        ).values_list("subject_id", flat=True)
    )


def _snapshot() -> dict[str, object]:
    return {
        "journeys": list(Journey.objects.order_by("key").values_list("key", "status", "name")),
        "versions": JourneyVersion.objects.count(),
        "changes": JourneyChange.objects.count(),
        "templates": TemplateVersion.objects.count(),
        "enrollments": sorted(
            Enrollment.objects.values_list("pk", "state", "current_step", "next_run_at")
        ),
        "runs": StepRun.objects.count(),
        "messages": sorted(Message.objects.values_list("idempotency_key", "status")),
    }


def test_it_takes_four_journeys_live_with_their_templates_and_a_tenth_held_out(
    milestones_demo: None,
) -> None:
    _seed("--force")

    journeys = Journey.objects.order_by("key")
    assert [(j.key, j.status, j.active_version.number) for j in journeys] == [  # type: ignore[union-attr]
        ("money-streak", "live", 1),
        ("saas-activated", "live", 1),
        ("saas-activation-rescue", "live", 1),
        ("shop-second-purchase", "live", 1),
    ]
    assert {j.key: j.trigger for j in journeys} == {
        "money-streak": {"kind": "milestone_achieved", "milestone": "weekly-spending-check"},
        "saas-activated": {"kind": "milestone_achieved", "milestone": "team-activated"},
        "saas-activation-rescue": {"kind": "milestone_missed", "milestone": "team-activated"},
        "shop-second-purchase": {
            "kind": "event",
            "event": "Order Completed",
            "filters": [{"property": "total", "op": "gt", "value": 0}],
        },
    }
    assert {str(j.holdout_percent) for j in journeys} == {"10.00"}
    assert {j.key: j.exit_when for j in journeys if j.exit_when} == {
        "saas-activation-rescue": [{"milestone": "team-activated", "state": "achieved"}],
        "shop-second-purchase": [{"milestone": "second-purchase", "state": "achieved"}],
    }
    assert Counter(JourneyChange.objects.values_list("action", flat=True)) == {
        "created": 4,
        "went live": 4,
    }
    templates = Template.objects.filter(key__in=[t[0] for t in TEMPLATES])
    assert set(templates.values_list("status", "active_version__number")) == {("active", 1)}
    assert templates.count() == 15
    # the rescue journey's heads-up goes to the support team the seed sets up
    assert list(Team.objects.values_list("key", "email")) == [
        ("support", "support@demo.milepost.test")
    ]
    assert Counter(templates.values_list("channel", flat=True)) == {
        "email": 10,
        "in_app": 3,
        "push": 2,
    }


def test_customers_whose_current_state_triggers_a_journey_are_enrolled_or_held_out(
    milestones_demo: None,
) -> None:
    _seed("--force")

    for key, (milestone, state, wait, length, _) in JOURNEYS.items():
        expected = _in_state(milestone, state)
        enrollments = Enrollment.objects.filter(journey__key=key)
        assert {e.customer_id for e in enrollments} == expected, key
        assert enrollments.count() == len(expected), key
        for enrollment in enrollments:
            want: tuple[str, str, dt.datetime | None]
            if is_holdout(key, enrollment.customer_id, 10.0):
                want = ("holdout", "", None)
            else:
                want = ("waiting", wait, NOW + length)
            got = (enrollment.state, enrollment.current_step, enrollment.next_run_at)
            assert got == want, (key, enrollment.customer_id)
    # The milestones demo's figures, as a plain count: late achievers are not rescued.
    counts = {key: Enrollment.objects.filter(journey__key=key).count() for key in DEMO_KEYS}
    assert counts == {
        "saas-activated": 16,
        "saas-activation-rescue": 12,
        "shop-second-purchase": 11,
        "money-streak": 6,
    }
    late = set(
        MilestoneOutcome.objects.filter(
            definition__key="team-activated", kind="achieved", is_late=True
        ).values_list("subject_id", flat=True)
    )
    rescued = set(
        Enrollment.objects.filter(journey__key="saas-activation-rescue").values_list(
            "customer_id", flat=True
        )
    )
    assert (len(late), late & rescued) == (4, set())


def test_the_first_sends_reach_the_delivery_policy_once_per_running_enrollment(
    milestones_demo: None,
) -> None:
    _seed("--force")

    expected: dict[str, tuple[str, str, str, str, list[str]]] = {}
    for key, (_, _, _, _, send) in JOURNEYS.items():
        for enrollment in Enrollment.objects.filter(journey__key=key, state="waiting"):
            if not send:
                continue
            customer = Customer.objects.get(pk=enrollment.customer_id)
            channels = ["push", "email"] if key == "money-streak" else ["email"]
            expected[step_run_key(enrollment.pk, send)] = (
                key, "queued", "email", customer.email, channels,
            )  # fmt: skip
    messages = Message.objects.filter(journey_key__in=DEMO_KEYS)
    assert {
        m.idempotency_key: (m.journey_key, m.status, m.channel, m.to_address, m.channels)
        for m in messages
    } == expected
    assert len(expected) == messages.count()
    # No device to push to: premium insights fall back to email, and the message says why.
    insight = messages.filter(journey_key="money-streak").first()
    assert insight is not None
    assert [(c["channel"], c["reason"]) for c in insight.explanation] == [
        ("push", "unreachable"),
        ("email", ""),
    ]
    runs = Counter(StepRun.objects.values_list("enrollment__journey__key", "step_key"))
    assert runs == {
        (key, send): Enrollment.objects.filter(journey__key=key, state="waiting").count()
        for key, (_, _, _, _, send) in JOURNEYS.items()
        if send
    }
    assert not Message.objects.filter(
        customer_id__in=Enrollment.objects.filter(state="holdout").values("customer_id"),
        journey_key__in=DEMO_KEYS,
    ).exists()


def test_it_reports_what_it_did(milestones_demo: None) -> None:
    lines = _seed("--force")

    tallies = [
        f"  {key}: "
        + ", ".join(
            f"{count} {state}"
            for state, count in sorted(
                Counter(
                    Enrollment.objects.filter(journey__key=key).values_list("state", flat=True)
                ).items()
            )
        )
        for key in DEMO_KEYS
    ]
    queued = Message.objects.filter(journey_key__in=DEMO_KEYS, status="queued").count()
    held = Enrollment.objects.filter(state="holdout").count()
    assert lines == [
        "Journeys demo: 4 journeys (4 created this run), 15 templates created.",
        f"Made 45 enrollments this run; the runner advanced {45 - held} enrollments.",
        *tallies,
        f"Journey messages: {queued} queued.",
    ]
    sent_first = Enrollment.objects.filter(state="waiting").exclude(
        journey__key="shop-second-purchase"
    )
    assert queued == sent_first.count()


def test_a_second_run_changes_nothing(milestones_demo: None) -> None:
    _seed("--force")
    before = _snapshot()

    lines = _seed("--force")

    assert lines[:2] == [
        "Journeys demo: 4 journeys (0 created this run), 0 templates created.",
        "Made 0 enrollments this run; the runner advanced 0 enrollments.",
    ]
    assert _snapshot() == before


def test_a_demo_journey_changed_since_is_left_as_it_is(milestones_demo: None) -> None:
    # given: a marketer renamed one demo journey and paused another
    _seed("--force")
    journey_save(key="saas-activated", name="Activated: tips")
    journey_pause(journey_id=Journey.objects.get(key="money-streak").pk)

    # when
    _seed("--force")

    # then
    assert list(Journey.objects.order_by("key").values_list("key", "status")) == [
        ("money-streak", "paused"),
        ("saas-activated", "live"),
        ("saas-activation-rescue", "live"),
        ("shop-second-purchase", "live"),
    ]
    assert Journey.objects.get(key="saas-activated").name == "Activated: tips"
    assert JourneyVersion.objects.count() == 4


def test_it_refuses_to_run_before_the_milestones_demo() -> None:
    Topic.objects.create(key="marketing", name="News and offers")

    with pytest.raises(CommandError) as refused:
        _seed("--force")

    assert str(refused.value) == (
        "Journeys demo: the demo milestones team-activated, second-purchase, "
        "weekly-spending-check are not active: run `manage.py milestones_demo_seed` first."
    )
    assert (Journey.objects.count(), Template.objects.count()) == (0, 0)


def test_it_refuses_to_seed_a_deployment_with_debug_off(milestones_demo: None) -> None:
    with pytest.raises(CommandError, match="DEBUG is off"):
        _seed()

    assert (Journey.objects.count(), Enrollment.objects.count()) == (0, 0)
    assert not Template.objects.filter(key__in=[t[0] for t in TEMPLATES]).exists()
