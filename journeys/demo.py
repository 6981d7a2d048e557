"""The journeys demo: the journeys of the milestones demo's three stories, live, with the
demo customers enrolled and a first round of steps taken.

A journey has one trigger, so a story with an achieved and a missed side is two journeys:

- **SaaS** (the team app's *Team activated* north star):
  ``saas-activated`` — achieved: automation tips by email, three days later a light upsell
  (an A/B split: by email or in the app);
  ``saas-activation-rescue`` — missed by day 5: a checklist email, two days later a
  quick-start guide with a support offer, a heads-up to the support team (a notify step:
  Admin → Teams) and an in-app checklist nudge; it ends as soon as
  the team activates (exit criteria) and counts that within 14 days as its goal.
- **E-commerce** (*Second purchase within 45 days*): ``shop-second-purchase`` — from the first
  paid order: a replenishment reminder after 10 days, then after 14 more either a second
  reminder or a free-shipping offer (an A/B split); it ends at the second purchase.
- **Fintech** (*Checked spending 4 weeks in a row*): ``money-streak`` — streak achieved:
  premium insights (push, else email); a week with no spending check after that (an
  until-wait of 8 days, twice) gets "your weekly snapshot is ready" by push (else email)
  and an in-app prompt.

Every journey holds 10 % of its entrants out as a control group. They are built through
``journeys.services`` (saved, then taken live) from templates made through
``messaging.templating``, and need the milestones demo's definitions (``milestones_demo_seed``).

The milestones demo recorded its outcomes before these journeys existed, so the seed does
what live journeys would have done: it enrolls the customers whose *current* state triggers
a journey — an achieved outcome; a missed one not made good since (a late achiever needs no
rescue); for the shop, the first paid order of a shopper still inside the 45-day window —
and runs the runner once, so the admin shows enrollments, step runs and messages (handed to
the delivery policy; the worker sends them). Waits start now. Idempotent: existing templates
and journeys are left as they are (even if edited since), an entry enrolls once (its entry
key), and nothing is due again until a wait ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from consent.models import Topic
from customers.models import Event
from journeys.enrollment import Entry, enroll, entries_from_outcomes
from journeys.models import Enrollment, Journey, JourneyStatus, JourneyVersion, Team
from journeys.runner import enrollments_advance
from journeys.services import journey_go_live, journey_save
from messaging.models import Message, Template
from messaging.templating import template_activate, template_save
from milestones.models import (
    DefinitionStatus,
    MilestoneDefinition,
    MilestoneOutcome,
    Progress,
    ProgressState,
    Unit,
)
from milestones.signals import OutcomeRecord

#: The demo milestones the journeys name (created by ``milestones_demo_seed``).
MILESTONES: Final = ("team-activated", "second-purchase", "weekly-spending-check")
TOPIC: Final = "marketing"
HOLDOUT_PERCENT: Final = 10
SUPPORT_EMAIL: Final = "support@demo.milepost.test"
#: Runner passes the seed makes at most; one is enough for these graphs (each run walks an
#: enrollment up to its first wait), the bound only guards against a journey edited since.
_MAX_RUNS = 20

_FOOTER = (
    '<p style="font-size:12px"><a href="{{ links.preferences }}" data-notrack>Preferences</a>'
    ' · <a href="{{ links.unsubscribe }}" data-notrack>Unsubscribe</a></p>'
)
_HI = "<p>Hi {{ customer.firstName | default('there') }},</p>"


def _email(subject: str, preheader: str, *paragraphs: str) -> dict[str, str]:
    body = "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    return {"subject": subject, "preheader": preheader, "html": _HI + body + _FOOTER, "text": ""}


#: (key, name, channel, fields): created (and activated) when missing.
TEMPLATES: Final[tuple[tuple[str, str, str, dict[str, Any]], ...]] = (
    (
        "saas-automation-tips-email", "SaaS: automation tips (email)", "email",
        _email(
            "Your team is set up. Now let it run itself",
            "Three automations teams like yours switch on first",
            "Your workspace, your teammates and your first task are in place.",
            '<a href="https://example.com/guides/recurring-tasks">Make a task repeat</a> · '
            '<a href="https://example.com/guides/rules">Assign work by rule</a> · '
            '<a href="https://example.com/guides/digest">Send a Monday digest</a>',
        ),
    ),
    (
        "saas-upsell-email", "SaaS: team plan upsell (email)", "email",
        _email(
            "Working well together? The Team plan does more",
            "Unlimited automations and guest seats",
            "Teams that activate in their first week outgrow the trial quickly.",
            '<a href="https://example.com/pricing/team">See what the Team plan adds</a>',
        ),
    ),
    (
        "saas-upsell-in_app", "SaaS: team plan upsell (in-app)", "in_app",
        {"title": "Unlock unlimited automations",
         "body": "The Team plan adds unlimited automations and guest seats.",
         "cta_label": "Compare plans", "cta_url": "/billing/plans"},
    ),
    (
        "saas-checklist-email", "SaaS: setup checklist (email)", "email",
        _email(
            "Three steps to a working team space",
            "Create a workspace, invite a teammate, complete a task",
            "Teams that finish these three steps in their first week stay with us.",
            '<a href="https://example.com/onboarding">Open your checklist</a>',
        ),
    ),
    (
        "saas-quick-start-email", "SaaS: quick start and support offer (email)", "email",
        _email(
            "Stuck? A 10-minute quick start, or a call with us",
            "Quick-start guide and a free onboarding call",
            '<a href="https://example.com/guides/quick-start">The 10-minute quick start</a>',
            'Rather talk it through? <a href="https://example.com/support/call">'
            "Book a free onboarding call</a>.",
        ),
    ),
    (
        "saas-support-heads-up", "SaaS: heads-up to support (team email)", "email",
        _email(
            "{{ account.name or customer.external_id }} has not activated yet",
            "A team that missed activation got the quick start",
            "{{ customer.email }} ({{ customer.plan }}) signed up but has not activated. They "
            "just received the quick-start guide and the offer of an onboarding call "
            "({{ journey.name }}).",
        ),
    ),
    (
        "saas-checklist-in_app", "SaaS: setup checklist nudge (in-app)", "in_app",
        {"title": "Finish setting up your team",
         "body": "A few steps left: invite a teammate and complete a first task.",
         "cta_label": "Open checklist", "cta_url": "/onboarding"},
    ),
    (
        "shop-replenish-email", "Shop: replenishment reminder (email)", "email",
        _email(
            "Running low?",
            "Reorder in two clicks",
            "It has been a little while since your order. Most customers reorder about now.",
            '<a href="https://example.com/account/orders">Reorder</a>',
        ),
    ),
    (
        "shop-replenish-reminder-email", "Shop: second replenishment reminder (email)", "email",
        _email(
            "Still stocked up?",
            "Your favourites are one click away",
            '<a href="https://example.com/account/orders">Reorder your last basket</a>',
        ),
    ),
    (
        "shop-free-shipping-email", "Shop: free shipping offer (email)", "email",
        _email(
            "Free shipping on your next order",
            "This week only",
            "Restock with free shipping: the code RESTOCK works until Sunday.",
            '<a href="https://example.com/shop?code=RESTOCK">Shop now</a>',
        ),
    ),
    (
        "money-premium-insights-push", "Money: premium insights (push)", "push",
        {"title": "4 weeks in a row!", "body": "You unlocked premium spending insights.",
         "deep_link": "app://insights/premium", "data": {"kind": "premium-insights"}},
    ),
    (
        "money-premium-insights-email", "Money: premium insights (email)", "email",
        _email(
            "Four weeks in a row: your premium insights are ready",
            "Trends, forecasts and where your money went",
            "You checked your spending four weeks running. That habit unlocks premium "
            "insights: monthly trends, a forecast and your top categories.",
            '<a href="https://example.com/insights">See your insights</a>',
        ),
    ),
    (
        "money-snapshot-push", "Money: weekly snapshot (push)", "push",
        {"title": "Your weekly snapshot is ready", "body": "See where your money went this week.",
         "deep_link": "app://snapshot/weekly", "data": {"kind": "weekly-snapshot"}},
    ),
    (
        "money-snapshot-email", "Money: weekly snapshot (email)", "email",
        _email(
            "Your weekly snapshot is ready",
            "Where your money went this week",
            '<a href="https://example.com/snapshot">Open your weekly snapshot</a>',
        ),
    ),
    (
        "money-snapshot-in_app", "Money: weekly snapshot prompt (in-app)", "in_app",
        {"title": "Your weekly snapshot is ready", "body": "Two minutes to see your week.",
         "cta_label": "Open snapshot", "cta_url": "/snapshot"},
    ),
)  # fmt: skip


def _send(key: str, templates: Sequence[str], then: str) -> dict[str, Any]:
    return {"key": key, "type": "send", "templates": list(templates), "next": then}


def _wait(key: str, then: str, **duration: int) -> dict[str, Any]:
    return {"key": key, "type": "wait", "duration": duration, "next": then}


def _checked(key: str, then: str, missed: str) -> dict[str, Any]:
    """A week of spending checks: the next check goes on to ``then``, none in 8 days to
    ``missed``."""
    return {
        "key": key, "type": "wait", "until": {"event": "Spending Checked"},
        "timeout": {"days": 8}, "next": then, "timeout_next": missed,
    }  # fmt: skip


_DONE: Final = {"key": "done", "type": "exit"}

#: (key, fields for ``journey_save``), in creation order.
JOURNEYS: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    (
        "saas-activated",
        {
            "name": "Team activated: automation tips, then a light upsell",
            "description": "Congratulate activated teams with automation tips; three days "
            "later a light Team plan upsell, by email or in the app (A/B).",
            "trigger": {"kind": "milestone_achieved", "milestone": "team-activated"},
            "priority": 10,
            "steps": [
                _send("automation-tips", ["saas-automation-tips-email"], "three-days"),
                _wait("three-days", "upsell", days=3),
                {
                    "key": "upsell",
                    "type": "split",
                    "variants": [
                        {"name": "email", "weight": 1, "next": "upsell-email"},
                        {"name": "in-app", "weight": 1, "next": "upsell-in-app"},
                    ],
                },
                _send("upsell-email", ["saas-upsell-email"], "done"),
                _send("upsell-in-app", ["saas-upsell-in_app"], "done"),
                _DONE,
            ],
        },
    ),
    (
        "saas-activation-rescue",
        {
            "name": "Missed activation by day 5: checklist, quick start, support",
            "description": "Teams that did not activate within 5 days of signup: a checklist, "
            "then a quick start with a support offer and an in-app nudge. Ends as soon as "
            "the team activates.",
            "trigger": {"kind": "milestone_missed", "milestone": "team-activated"},
            "priority": 20,
            "steps": [
                _send("checklist", ["saas-checklist-email"], "two-days"),
                _wait("two-days", "quick-start", days=2),
                _send("quick-start", ["saas-quick-start-email"], "tell-support"),
                {
                    "key": "tell-support",
                    "type": "notify",
                    "to": "support",
                    "template": "saas-support-heads-up",
                    "next": "checklist-nudge",
                },
                _send("checklist-nudge", ["saas-checklist-in_app"], "five-days"),
                _wait("five-days", "done", days=5),
                _DONE,
            ],
            "goal": {"milestone": "team-activated", "within": {"days": 14}},
            "exit_when": [{"milestone": "team-activated", "state": "achieved"}],
        },
    ),
    (
        "shop-second-purchase",
        {
            "name": "Second purchase: replenishment reminders",
            "description": "From a shopper's first paid order: a replenishment reminder after "
            "10 days, then a second reminder or a free-shipping offer (A/B). Ends at the "
            "second purchase.",
            "trigger": {
                "kind": "event",
                "event": "Order Completed",
                "filters": [{"property": "total", "op": "gt", "value": 0}],
            },
            "priority": 5,
            "steps": [
                _wait("ten-days", "reminder", days=10),
                _send("reminder", ["shop-replenish-email"], "two-weeks"),
                _wait("two-weeks", "offer", days=14),
                {
                    "key": "offer",
                    "type": "split",
                    "variants": [
                        {"name": "reminder", "weight": 1, "next": "second-reminder"},
                        {"name": "free-shipping", "weight": 1, "next": "free-shipping"},
                    ],
                },
                _send("second-reminder", ["shop-replenish-reminder-email"], "done"),
                _send("free-shipping", ["shop-free-shipping-email"], "done"),
                _DONE,
            ],
            "goal": {"milestone": "second-purchase", "within": {"days": 45}},
            "exit_when": [{"milestone": "second-purchase", "state": "achieved"}],
        },
    ),
    (
        "money-streak",
        {
            "name": "Spending streak: premium insights, and a nudge after a missed week",
            "description": "Four weeks of spending checks unlock premium insights; a week "
            "without a check after that brings the weekly snapshot by push and in the app.",
            "trigger": {"kind": "milestone_achieved", "milestone": "weekly-spending-check"},
            "priority": 10,
            "steps": [
                _send(
                    "premium-insights",
                    ["money-premium-insights-push", "money-premium-insights-email"],
                    "week-one",
                ),
                _checked("week-one", "week-two", "snapshot"),
                _checked("week-two", "kept-the-habit", "snapshot"),
                _send("snapshot", ["money-snapshot-push", "money-snapshot-email"], "prompt"),
                _send("prompt", ["money-snapshot-in_app"], "done"),
                {"key": "kept-the-habit", "type": "exit"},
                _DONE,
            ],
        },
    ),
)
DEMO_KEYS: Final = tuple(key for key, _ in JOURNEYS)


class DemoNotReady(RuntimeError):
    """What the journeys demo needs is missing (the milestones demo, the marketing topic)."""


@dataclasses.dataclass(frozen=True, slots=True)
class JourneysDemoResult:
    templates_created: int
    journeys_created: int
    enrolled: int
    """Enrollments this run made (held-out ones included)."""
    advanced: int
    """Enrollments the runner advanced this run."""
    enrollments: Mapping[str, Mapping[str, int]]
    """Per demo journey key: enrollments by state."""
    messages: Mapping[str, int]
    """The demo journeys' messages by status (with the reason when there is one)."""


def journeys_demo_seed(*, now: dt.datetime | None = None) -> JourneysDemoResult:
    """Ensure the demo templates and journeys exist (live), enroll the demo customers whose
    current state triggers them, and advance what is due. Idempotent; one transaction.
    Raises ``DemoNotReady`` without the milestones demo's definitions."""
    now = now or timezone.now()
    with transaction.atomic():
        _ready_check()
        # Where the rescue journey's heads-up goes (a notify step to "support").
        Team.objects.get_or_create(
            key="support", defaults={"name": "Support", "email": SUPPORT_EMAIL}
        )
        templates = _templates_ensure()
        journeys = _journeys_ensure()
        enrolled = len(enroll(demo_entries(), now=now))
        advanced = 0
        for _ in range(_MAX_RUNS):
            claimed = enrollments_advance(now=now)
            advanced += claimed
            if not claimed:
                break
    return JourneysDemoResult(
        templates_created=templates,
        journeys_created=journeys,
        enrolled=enrolled,
        advanced=advanced,
        enrollments=_enrollment_tally(),
        messages=_message_tally(),
    )


def _ready_check() -> None:
    active = set(
        MilestoneDefinition.objects.filter(
            key__in=MILESTONES, status=DefinitionStatus.ACTIVE
        ).values_list("key", flat=True)
    )
    missing = [key for key in MILESTONES if key not in active]
    if missing:
        raise DemoNotReady(
            f"the demo milestones {', '.join(missing)} are not active: run "
            "`manage.py milestones_demo_seed` first"
        )
    if not Topic.objects.filter(key=TOPIC).exists():
        raise DemoNotReady(f"the {TOPIC!r} topic is missing (it comes with the migrations)")


def _templates_ensure() -> int:
    existing = set(
        Template.objects.filter(key__in=[t[0] for t in TEMPLATES]).values_list("key", flat=True)
    )
    topic = Topic.objects.get(key=TOPIC)
    created = 0
    for key, name, channel, fields in TEMPLATES:
        if key in existing:
            continue
        template = template_save(
            key=key, name=name, channel=channel, topic=topic, default_locale="en",
            variants={"en": fields},
        )  # fmt: skip
        template_activate(template_id=template.pk)
        created += 1
    return created


def _journeys_ensure() -> int:
    existing = set(Journey.objects.filter(key__in=DEMO_KEYS).values_list("key", flat=True))
    created = 0
    for key, fields in JOURNEYS:
        if key in existing:
            continue
        journey = journey_save(key=key, holdout_percent=HOLDOUT_PERCENT, **fields)
        journey_go_live(journey_id=journey.pk)
        created += 1
    return created


# --- Entries from the demo's history -------------------------------------------------------


def demo_entries() -> list[Entry]:
    """The entries the live demo journeys would have seen had they been live all along,
    limited to customers whose current state still calls for the journey."""
    versions = [
        version
        for version in JourneyVersion.objects.filter(
            journey__key__in=DEMO_KEYS, journey__status=JourneyStatus.LIVE
        ).select_related("journey")
        if version.journey.active_version_id == version.pk
    ]
    entries: list[Entry] = []
    for version in versions:
        trigger = version.trigger
        if trigger.get("kind") in ("milestone_achieved", "milestone_missed"):
            state = str(trigger["kind"]).removeprefix("milestone_")
            entries += entries_from_outcomes(_outcomes_standing(str(trigger["milestone"]), state))
        elif trigger.get("kind") == "event" and version.goal:
            entries += _first_events_on_the_way(
                str(trigger["event"]), str(version.goal["milestone"])
            )
    return entries


def _outcomes_standing(milestone: str, kind: str) -> list[OutcomeRecord]:
    """Customer outcomes of ``kind`` whose progress is still in that state."""
    standing = Progress.objects.filter(
        version_id=OuterRef("version_id"),
        unit=Unit.CUSTOMER,
        subject_id=OuterRef("subject_id"),
        state=kind,
    )
    rows = (
        MilestoneOutcome.objects.filter(definition__key=milestone, kind=kind, unit=Unit.CUSTOMER)
        .filter(Exists(standing))
        .order_by("pk")
        .values_list(
            "pk", "definition_id", "version_id", "unit", "subject_id", "is_late", "occurred_at"
        )
    )
    return [
        OutcomeRecord(pk, definition_id, version_id, milestone, unit, subject, kind, late, at)
        for pk, definition_id, version_id, unit, subject, late, at in rows
    ]


def _first_events_on_the_way(event: str, goal: str) -> list[Entry]:
    """The first ``event`` of each customer whose goal milestone is still in progress (a
    trigger's property filters are applied by ``enroll``)."""
    on_the_way = Progress.objects.filter(
        definition__key=goal, unit=Unit.CUSTOMER, state=ProgressState.IN_PROGRESS
    ).values("subject_id")
    first: dict[int, Entry] = {}
    for pk, customer_id, at, properties in (
        Event.objects.filter(name=event, customer_id__in=on_the_way)
        .order_by("occurred_at", "pk")
        .values_list("pk", "customer_id", "occurred_at", "properties")
    ):
        if customer_id not in first:
            first[customer_id] = Entry(
                customer_id, "event", event, f"event:{pk}", at, properties=properties or {}
            )
    return list(first.values())


# --- Tallies -------------------------------------------------------------------------------


def _enrollment_tally() -> dict[str, dict[str, int]]:
    found: dict[str, Counter[str]] = {key: Counter() for key in DEMO_KEYS}
    for key, state in Enrollment.objects.filter(journey__key__in=DEMO_KEYS).values_list(
        "journey__key", "state"
    ):
        found[key][state] += 1
    return {key: dict(sorted(states.items())) for key, states in found.items()}


def _message_tally() -> dict[str, int]:
    counts = Counter(
        f"{status} ({reason})" if reason else status
        for status, reason in Message.objects.filter(journey_key__in=DEMO_KEYS).values_list(
            "status", "reason"
        )
    )
    return dict(sorted(counts.items()))
