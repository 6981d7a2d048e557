"""The milestones demo: three milestones from real practice, with events driven through them.

- **SaaS activation** (a team task app): *Team activated* — created a workspace, invited a
  teammate and completed a task within 5 days of signup. It is a north star whose condition
  is its three micro-milestones (its children in the admin), so the admin shows where new
  teams stall.
- **E-commerce**: *Second purchase within 45 days* of the first.
- **Fintech**: *Checked spending 4 weeks in a row*, a habit with no deadline.

Three lifecycle stages follow the north star: onboarding (in progress), active (achieved) and
at risk (missed). Signups are spread over the last 8 weeks (the shop's clientele over 14), so
some deadlines have passed and some are still ahead.

Definitions are created and activated through ``milestones.services`` and every event goes
through the real ingest service, whose ``events_stored`` hook records the pending
evaluations. The demo worker may not be running yet, so the seed then does what it would:
drains the pending evaluations, runs the activation backfills and the missed-deadline sweep.
Everything comes from ``random.Random(DEMO_SEED)`` and offsets from one "now", and every
message has a fixed ``messageId``: a second run is a pure replay that stores and evaluates
nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson
from django.db import transaction
from django.utils import timezone

from customers.ingest.parsing import Limits, parse_batch
from customers.ingest.service import events_ingest
from customers.models import Source
from customers.services import source_create
from milestones.backfill import backfill_run
from milestones.evaluation import pending_evaluate
from milestones.models import (
    Anchor,
    Backfill,
    BackfillStatus,
    LifecycleStage,
    MilestoneDefinition,
    MilestoneKind,
    MilestoneOutcome,
    Progress,
)
from milestones.services import definition_activate, definition_create, definition_update
from milestones.stages import parse_stage_rules
from milestones.sweep import deadlines_sweep

DEMO_SOURCE_NAME: Final = "Milestones demo"
DEMO_SEED: Final = 7

_BATCH_SIZE = 100
_SIGNUP_DAYS = 56
# Shoppers' window is 45 days from their first order: an older clientele, so some have passed.
_SHOP_DAYS = 100
_LIBRARY = {"name": "milepost-milestones-demo", "version": "1.0.0"}
_WEEK = dt.timedelta(days=7)

# --- The definitions ----------------------------------------------------------------------

NORTH_STAR: Final = "team-activated"
_TEAM_PLANS = {"plans": ["trial", "team"]}
_MONEY_PLANS = {"plans": ["personal", "premium"]}


@dataclasses.dataclass(frozen=True, slots=True)
class _Definition:
    key: str
    fields: Mapping[str, Any]
    parent: str | None = None


def _event_count(event: str, at_least: int = 1, **extra: Any) -> dict[str, Any]:
    return {"type": "event_count", "event": event, "at_least": at_least, **extra}


#: In creation order: a condition may only name milestones that already exist.
DEFINITIONS: Final = (
    _Definition(
        "workspace-created",
        {
            "name": "Created a workspace",
            "kind": MilestoneKind.ONBOARDING,
            "condition": _event_count("Workspace Created"),
            "eligibility": _TEAM_PLANS,
        },
        parent=NORTH_STAR,
    ),
    _Definition(
        "teammate-invited",
        {
            "name": "Invited a teammate",
            "kind": MilestoneKind.ONBOARDING,
            "condition": _event_count("Teammate Invited"),
            "eligibility": _TEAM_PLANS,
        },
        parent=NORTH_STAR,
    ),
    _Definition(
        "first-task-completed",
        {
            "name": "Completed a first task",
            "kind": MilestoneKind.ONBOARDING,
            "condition": _event_count("Task Completed"),
            "eligibility": _TEAM_PLANS,
        },
        parent=NORTH_STAR,
    ),
    _Definition(
        NORTH_STAR,
        {
            "name": "Team activated",
            "description": (
                "North star of the team app: created a workspace, invited a teammate and "
                "completed a task within 5 days of signup. Its micro-milestones are its children."
            ),
            "kind": MilestoneKind.ONBOARDING,
            "condition": {
                "type": "all",
                "conditions": [
                    {"type": "milestone", "key": "workspace-created"},
                    {"type": "milestone", "key": "teammate-invited"},
                    {"type": "milestone", "key": "first-task-completed"},
                ],
            },
            "window": dt.timedelta(days=5),
            "eligibility": _TEAM_PLANS,
        },
    ),
    _Definition(
        "second-purchase",
        {
            "name": "Second purchase within 45 days",
            "description": "A shopper's second paid order within 45 days of the first.",
            "kind": MilestoneKind.VALUE,
            "condition": _event_count(
                "Order Completed", 2, where=[{"property": "total", "op": "gt", "value": 0}]
            ),
            "anchor": Anchor.EVENT,
            "anchor_event": "Order Completed",
            "window": dt.timedelta(days=45),
        },
    ),
    _Definition(
        "weekly-spending-check",
        {
            "name": "Checked spending 4 weeks in a row",
            "description": "The budgeting habit: the spending screen opened in 4 consecutive "
            "weeks (ISO weeks in the customer's time zone).",
            "kind": MilestoneKind.HABIT,
            "condition": {
                "type": "streak",
                "event": "Spending Checked",
                "periods": 4,
                "unit": "week",
            },
            "eligibility": _MONEY_PLANS,
        },
    ),
)

#: (key, name, priority, rules): the north star moves customers between stages.
STAGES: Final = (
    ("at_risk", "At risk", 10, [{"milestone": NORTH_STAR, "state": "missed"}]),
    ("active", "Active", 20, [{"milestone": NORTH_STAR, "state": "achieved"}]),
    ("onboarding", "Onboarding", 30, [{"milestone": NORTH_STAR, "state": "in_progress"}]),
)


# --- The seed -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MilestonesDemoResult:
    source_name: str
    source_key: str | None
    """The plain write key when this run created the source; None when it already existed."""
    definitions_created: int
    stages_created: int
    messages_sent: int
    events_stored: int
    pairs_evaluated: int
    backfills_run: int
    swept_missed: int
    outcomes: Mapping[str, Mapping[str, int]]
    """Per demo definition key: outcomes by kind (achieved, missed), late ones included."""
    progress: Mapping[str, Mapping[str, int]]
    """Per demo definition key: progress rows by state."""


def milestones_demo_seed() -> MilestonesDemoResult:
    """Ensure the demo definitions, stages and events exist, and evaluate them.

    Idempotent; one transaction. A definition or stage that already exists under its key is
    left as it is (even if it was edited or archived since)."""
    with transaction.atomic():
        source_id, source_key = _source_ensure()
        stages_created = _stages_ensure()
        definitions_created = _definitions_ensure()
        payloads = demo_payloads(now=timezone.now())
        stored = _ingest(source_id, payloads)
        # What the workers would do: the pending rows ingest recorded, then the activation
        # backfills (everyone ingest did not wake, e.g. signups who never acted), then the
        # evaluations those queued.
        evaluated = _pending_drain()
        backfills = _backfills_run()
        evaluated += _pending_drain()
        swept = deadlines_sweep().missed
        outcomes, progress = _tallies()
    return MilestonesDemoResult(
        source_name=DEMO_SOURCE_NAME,
        source_key=source_key,
        definitions_created=definitions_created,
        stages_created=stages_created,
        messages_sent=len(payloads),
        events_stored=stored,
        pairs_evaluated=evaluated,
        backfills_run=backfills,
        swept_missed=swept,
        outcomes=outcomes,
        progress=progress,
    )


def _source_ensure() -> tuple[int, str | None]:
    existing = Source.objects.filter(name=DEMO_SOURCE_NAME).values_list("id", flat=True).first()
    if existing is not None:
        return existing, None
    created = source_create(name=DEMO_SOURCE_NAME)
    return created.id, created.key


def _stages_ensure() -> int:
    created = 0
    for key, name, priority, rules in STAGES:
        parse_stage_rules(rules)
        _, is_new = LifecycleStage.objects.get_or_create(
            key=key, defaults={"name": name, "priority": priority, "rules": rules}
        )
        created += is_new
    return created


def _definitions_ensure() -> int:
    """Create and activate the missing definitions, children before the north star that
    names them, and link each child to its parent before activating it."""
    existing = set(
        MilestoneDefinition.objects.filter(key__in=[d.key for d in DEFINITIONS]).values_list(
            "key", flat=True
        )
    )
    created = {
        spec.key: definition_create(key=spec.key, **spec.fields)
        for spec in DEFINITIONS
        if spec.key not in existing
    }
    for spec in DEFINITIONS:
        definition = created.get(spec.key)
        if definition is None:
            continue
        if spec.parent is not None:
            parent = MilestoneDefinition.objects.get(key=spec.parent)
            definition_update(definition=definition, parent=parent)
    for spec in DEFINITIONS:
        if spec.key in created:
            definition_activate(definition=created[spec.key])
    return len(created)


def _ingest(source_id: int, payloads: Sequence[dict[str, Any]]) -> int:
    stored = 0
    for batch in _chunks(payloads, _BATCH_SIZE):
        received_at = timezone.now()
        body = orjson.dumps({"batch": batch, "context": {"library": _LIBRARY}})
        parsed = parse_batch(body, received_at, Limits())
        if parsed.errors:
            # The generator's own payloads must be valid; anything else is a bug here.
            raise ValueError(f"demo payload rejected: {parsed.errors[0]}")
        result = events_ingest(
            source_id=source_id, messages=parsed.messages, received_at=received_at
        )
        stored += result.stored
    return stored


def _pending_drain() -> int:
    evaluated = 0
    while pairs := pending_evaluate().pairs:
        evaluated += pairs
    return evaluated


def _backfills_run() -> int:
    """Run the demo versions' queued activation backfills, oldest first (children first)."""
    queued = Backfill.objects.filter(
        version__definition__key__in=[d.key for d in DEFINITIONS],
        status=BackfillStatus.QUEUED,
    ).order_by("pk")
    ids = list(queued.values_list("pk", flat=True))
    for backfill_id in ids:
        backfill_run(backfill_id=backfill_id)
    return len(ids)


def _tallies() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    keys = [d.key for d in DEFINITIONS]
    outcomes: dict[str, Counter[str]] = {key: Counter() for key in keys}
    for key, kind in MilestoneOutcome.objects.filter(definition__key__in=keys).values_list(
        "definition__key", "kind"
    ):
        outcomes[key][kind] += 1
    progress: dict[str, Counter[str]] = {key: Counter() for key in keys}
    for key, state in Progress.objects.filter(definition__key__in=keys).values_list(
        "definition__key", "state"
    ):
        progress[key][state] += 1
    return (
        {key: dict(sorted(found.items())) for key, found in outcomes.items()},
        {key: dict(sorted(found.items())) for key, found in progress.items()},
    )


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# --- The data set -------------------------------------------------------------------------

_TEAMS = 30
_SHOPPERS = 24
_SAVERS = 18
_SAVER_WEEKS = _SIGNUP_DAYS // 7 + 1

_FIRST_NAMES = (
    "Alba", "Benedikt", "Camille", "Dario", "Esra", "Felix", "Greta", "Hamid", "Ivana", "Jun",
    "Katja", "Lorenzo", "Maya", "Nils", "Olga", "Pablo", "Rania", "Samir", "Thea", "Umar",
    "Vera", "Wim", "Yara", "Zeno",
)  # fmt: skip
_LAST_NAMES = (
    "Berg", "Costa", "Duarte", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito", "Jansen",
    "Kim", "Laine", "Moretti", "Nowak", "Okoye", "Park", "Quist", "Rahman", "Schulz",
)  # fmt: skip
_ZONES = (
    "America/New_York", "America/Chicago", "America/Los_Angeles", "America/Sao_Paulo",
    "Europe/London", "Europe/Berlin", "Europe/Madrid", "Asia/Kolkata", "Asia/Tokyo",
    "Australia/Sydney",
)  # fmt: skip
_PROJECTS = ("Launch plan", "Hiring", "Q3 roadmap", "Website", "Office move", "Onboarding")
_CATEGORIES = ("groceries", "rent", "transport", "dining", "subscriptions", "travel")


class _Builder:
    def __init__(self, now: dt.datetime) -> None:
        self.rng = random.Random(DEMO_SEED)  # noqa: S311 - demo data, not security
        self.now = now
        self.sequence = 0
        self.messages: list[tuple[dt.datetime, int, dict[str, Any]]] = []

    def add(self, call_type: str, at: dt.datetime, **fields: Any) -> None:
        """Add a call unless it would happen after "now" (that part of the story is to come)."""
        self.sequence += 1
        if at > self.now:
            return
        payload = {
            "type": call_type,
            "messageId": f"milestones-demo-{self.sequence}",
            "timestamp": _iso(at),
            **fields,
        }
        self.messages.append((at, self.sequence, payload))

    def track(self, user_id: str, event: str, at: dt.datetime, **properties: Any) -> None:
        self.add("track", at, userId=user_id, event=event, properties=properties)

    def signup(
        self, user_id: str, index: int, plan: str | None, domain: str, *, days: int
    ) -> tuple[dt.datetime, ZoneInfo]:
        """An identify call at signup, in the last ``days``; returns its time and the zone."""
        rng = self.rng
        at = self.now - dt.timedelta(days=rng.uniform(0.2, days))
        first, last = _FIRST_NAMES[index % len(_FIRST_NAMES)], rng.choice(_LAST_NAMES)
        zone = rng.choice(_ZONES)
        traits: dict[str, Any] = {
            "email": f"{first}.{last}.{index}@{domain}".lower(),
            "firstName": first,
            "lastName": last,
            "name": f"{first} {last}",
            "timezone": zone,
            "createdAt": _iso(at),
        }
        if plan is not None:
            traits["plan"] = plan
        self.add("identify", at, userId=user_id, traits=traits)
        return at, ZoneInfo(zone)

    def after(self, at: dt.datetime, low_days: float, high_days: float) -> dt.datetime:
        return at + dt.timedelta(days=self.rng.uniform(low_days, high_days))


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def demo_payloads(*, now: dt.datetime) -> list[dict[str, Any]]:
    """The demo's Segment calls, oldest first. Same seed, same calls, same message ids."""
    builder = _Builder(now)
    for index in range(_TEAMS):
        _team(builder, index)
    for index in range(_SHOPPERS):
        _shopper(builder, index)
    for index in range(_SAVERS):
        _saver(builder, index)
    return [payload for _, _, payload in sorted(builder.messages, key=lambda m: (m[0], m[1]))]


def _team(builder: _Builder, index: int) -> None:
    """A team app trial: most activate in days, some late, some stall, some never start."""
    rng = builder.rng
    user = f"demo-team-{index + 1:02d}"
    plan = rng.choice(("trial", "trial", "team"))
    signed_up, _ = builder.signup(user, index, plan, "team.example", days=_SIGNUP_DAYS)
    builder.track(user, "Signed Up", signed_up + dt.timedelta(minutes=1), method="email")
    story = rng.choices(("fast", "late", "stalled", "ghost"), weights=(45, 20, 25, 10))[0]
    if story == "ghost":
        return
    project = rng.choice(_PROJECTS)
    builder.track(user, "Workspace Created", builder.after(signed_up, 0.01, 0.5), workspace=project)
    if story == "stalled":
        if rng.random() < 0.5:
            builder.track(user, "Teammate Invited", builder.after(signed_up, 0.5, 3), role="member")
        return
    invited = builder.after(signed_up, 0.5, 3 if story == "fast" else 9)
    builder.track(user, "Teammate Invited", invited, role=rng.choice(("member", "admin")))
    if story == "fast":
        first_task = builder.after(signed_up, 1, 4.5)
    else:
        first_task = builder.after(signed_up, 6, 14)
    for task in range(rng.randint(1, 12)):
        at = first_task + dt.timedelta(days=task * rng.uniform(0.5, 3))
        builder.track(user, "Task Completed", at, project=project, subtasks=rng.randint(0, 5))


def _shopper(builder: _Builder, index: int) -> None:
    """A shop customer: some come back within 45 days, some later, many never."""
    rng = builder.rng
    user = f"demo-shop-{index + 1:02d}"
    signed_up, _ = builder.signup(user, index + 7, None, "shop.example", days=_SHOP_DAYS)
    story = rng.choices(("repeat", "late", "once"), weights=(40, 15, 45))[0]
    first = builder.after(signed_up, 0, 2)
    orders = [first]
    if story == "repeat":
        orders.append(builder.after(first, 3, 40))
        if rng.random() < 0.4:
            orders.append(builder.after(orders[-1], 5, 30))
    elif story == "late":
        orders.append(builder.after(first, 50, 75))
    for number, at in enumerate(orders, start=1):
        builder.track(
            user,
            "Order Completed",
            at,
            order_id=f"demo-order-{index + 1:02d}-{number}",
            total=round(rng.uniform(12, 180), 2),
            currency="EUR",
            items=rng.randint(1, 5),
        )


def _saver(builder: _Builder, index: int) -> None:
    """A budgeting app user: some check their spending every week, some lapse, some skip."""
    rng = builder.rng
    user = f"demo-money-{index + 1:02d}"
    plan = rng.choice(("personal", "personal", "premium"))
    signed_up, zone = builder.signup(user, index + 13, plan, "money.example", days=_SIGNUP_DAYS)
    builder.track(user, "Signed Up", signed_up + dt.timedelta(minutes=1), method="app")
    story = rng.choices(("habit", "lapsed", "sporadic"), weights=(50, 25, 25))[0]
    lapse_after = rng.randint(1, 3)
    # A fixed number of weeks, so the calls (and their ids) do not depend on "now".
    for week, monday in enumerate(_local_weeks(signed_up, zone, _SAVER_WEEKS)):
        if story == "lapsed" and week >= lapse_after:
            return
        if story == "sporadic" and rng.random() < 0.5:
            continue
        for _ in range(rng.randint(1, 3)):
            at = monday + dt.timedelta(days=rng.randint(0, 6), hours=rng.uniform(7, 22))
            if at > signed_up:
                builder.track(user, "Spending Checked", at, category=rng.choice(_CATEGORIES))


def _local_weeks(start: dt.datetime, zone: ZoneInfo, weeks: int) -> Iterator[dt.datetime]:
    """Midnight of ``weeks`` local Mondays, from ``start``'s week on."""
    local = start.astimezone(zone)
    first = local.date() - dt.timedelta(days=local.weekday())
    for week in range(weeks):
        yield dt.datetime.combine(first + week * _WEEK, dt.time(), tzinfo=zone)
