"""Shared by the evaluator's property and concurrency tests: a fixed set of milestones, Segment
calls delivered through the real ingest service, an oracle that evaluates a subject's whole
history from scratch with the pure condition core, and dumps of what the evaluator stored.

The oracle states the evaluator's contract in a few lines, independently of its machinery
(pending rows, row locks, micro-batches):

- the anchor is the signup (``created_at``) or the first anchor event; no anchor, no row;
- the deadline is ``anchor + window``; the on-time range is ``[anchor, min(now, deadline)]``;
- achieved in that range: ``achieved`` at the earliest moment, on time;
- otherwise, once ``deadline + grace`` has passed: ``missed`` at the deadline, and if the whole
  history up to ``now`` achieves the condition, also ``achieved`` late at that moment (a
  missed row shows its progress up to ``now``, as the evaluator does for missed rows);
- otherwise ``in_progress`` with the on-time range's progress.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from customers.ingest.parsing import Limits, parse_batch
from customers.ingest.service import IngestResult, events_ingest
from customers.models import Customer, Event
from milestones.conditions import EventFact, Facts, evaluate
from milestones.models import Anchor, MilestoneOutcome, Progress
from milestones.registry import CompiledVersion
from milestones.services import definition_activate, definition_create

REPORT = "Report Created"
ORDER = "Order Completed"
SESSION = "Session Started"
NOISE = "Page Viewed"  # read by no milestone
NAMES = (REPORT, ORDER, SESSION, NOISE)

#: Active milestones of every shape whose answer more history can only bring forward
#: (positive amounts; anchors that only widen the range). Keyed by definition key.
MILESTONES: Mapping[str, Mapping[str, Any]] = {
    "busy_week": {
        "condition": {"type": "event_count", "event": REPORT, "at_least": 3, "within": {"days": 7}},
    },
    "big_spender": {
        "condition": {
            "type": "property_sum",
            "event": ORDER,
            "property": "amount",
            "at_least": 150,
        },
    },
    "regular": {"condition": {"type": "distinct_days", "event": SESSION, "days": 3}},
    "funnel": {
        "condition": {
            "type": "sequence",
            "steps": [
                {"event": SESSION},
                {"event": REPORT, "within": {"days": 2}},
                {"event": ORDER},
            ],
        },
    },
    "quick_start": {
        "condition": {"type": "event_count", "event": REPORT, "at_least": 2},
        "window": dt.timedelta(days=5),
    },
    "first_value": {
        "condition": {
            "type": "all",
            "conditions": [
                {"type": "distinct_days", "event": SESSION, "days": 2},
                {"type": "property_sum", "event": ORDER, "property": "amount", "at_least": 60},
            ],
        },
        "window": dt.timedelta(days=10),
    },
    "after_first_order": {
        "condition": {"type": "event_count", "event": REPORT, "at_least": 2, "within": {"days": 3}},
        "anchor": "event",
        "anchor_event": ORDER,
    },
}


def milestones_activate(keys: Iterable[str] = tuple(MILESTONES)) -> dict[str, int]:
    """Create and activate the named milestones; returns active version ids by key. The
    caller decides what happens to the activation backfill's task."""
    versions: dict[str, int] = {}
    for key in keys:
        definition = definition_create(
            key=key, name=key.replace("_", " ").title(), kind="onboarding", **MILESTONES[key]
        )
        definition_activate(definition=definition)
        assert definition.active_version_id is not None
        versions[key] = definition.active_version_id
    return versions


ZONES = ("UTC", "America/New_York", "Asia/Tokyo")


def customers_bulk(count: int, created_at: dt.datetime, prefix: str = "c") -> list[Customer]:
    """``count`` known customers who signed up at ``created_at``, in id order, zones mixed."""
    Customer.objects.bulk_create(
        Customer(
            external_id=f"{prefix}{n:04}",
            time_zone=ZONES[n % len(ZONES)],
            created_at=created_at,
            first_seen=created_at,
            last_seen=created_at,
        )
        for n in range(count)
    )
    return list(Customer.objects.filter(external_id__startswith=prefix).order_by("pk"))


# --- Delivering ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One track call as a product would send it."""

    message_id: str
    user: str
    event: str
    at: dt.datetime
    amount: int | None = None

    def payload(self) -> dict[str, Any]:
        properties: dict[str, Any] = {} if self.amount is None else {"amount": self.amount}
        return {
            "type": "track",
            "userId": self.user,
            "event": self.event,
            "timestamp": self.at.isoformat(),
            "messageId": self.message_id,
            "properties": properties,
        }


def deliver(source_id: int, calls: Sequence[Call], received_at: dt.datetime) -> IngestResult:
    """One ``/v1/batch`` request's worth of calls, through the parser and the ingest service."""
    body = orjson.dumps({"batch": [call.payload() for call in calls]})
    parsed = parse_batch(body, received_at, Limits())
    assert parsed.errors == []
    return events_ingest(source_id=source_id, messages=parsed.messages, received_at=received_at)


def histories(
    users: Sequence[str], start: dt.datetime, span: dt.timedelta, rng: random.Random
) -> list[Call]:
    """A few events of every kind per user, at whole minutes in ``[start, start + span)``."""
    minutes = int(span.total_seconds() // 60)
    calls: list[Call] = []
    for user in users:
        for _ in range(rng.randint(2, 10)):
            name = rng.choice(NAMES)
            calls.append(
                Call(
                    f"{user}-{len(calls)}",
                    user,
                    name,
                    start + dt.timedelta(minutes=rng.randrange(minutes)),
                    rng.randint(5, 90) if name == ORDER else None,
                )
            )
    return calls


def chunks(calls: Sequence[Call], count: int) -> list[list[Call]]:
    """``calls`` in ``count`` consecutive batches of nearly equal size."""
    size = max(1, -(-len(calls) // count))
    return [list(calls[i : i + size]) for i in range(0, len(calls), size)]


def as_stored(calls: Iterable[Call]) -> list[tuple[str, str, str, dt.datetime, dict[str, Any]]]:
    """What ``stored_calls`` returns once each of ``calls`` is stored, and only once."""
    unique = {call.message_id: call for call in calls}
    return sorted(
        (c.message_id, c.user, c.event, c.at, {} if c.amount is None else {"amount": c.amount})
        for c in unique.values()
    )


def stored_calls() -> list[tuple[str, str, str, dt.datetime, dict[str, Any]]]:
    """The stored events as (message id, user, name, occurred_at, properties), sorted."""
    rows = Event.objects.values_list(
        "message_id", "customer__external_id", "name", "occurred_at", "properties"
    )
    return sorted(rows, key=lambda row: row[0])


# --- The oracle ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Judged:
    state: str
    achieved_at: dt.datetime | None
    missed_at: dt.datetime | None
    is_late: bool
    done: int
    total: int


Outcome = tuple[str, bool, dt.datetime]  # kind, is_late, occurred_at


def judge(
    version: CompiledVersion,
    *,
    created_at: dt.datetime,
    zone: ZoneInfo,
    events: Sequence[EventFact],
    now: dt.datetime,
    grace: dt.timedelta,
) -> tuple[Judged | None, list[Outcome]]:
    """The progress row and the outcomes a subject's complete history gives at ``now``."""
    anchor = _anchor(version, created_at, events)
    if anchor is None:
        return None, []
    deadline = None if version.window is None else anchor + version.window
    end = now if deadline is None else min(now, deadline)
    on_time = _evaluate(version, events, zone, min(anchor, end), end)
    done, total = on_time.progress.done, on_time.progress.total
    if on_time.achieved_at is not None:
        at = on_time.achieved_at
        return Judged("achieved", at, None, False, done, total), [("achieved", False, at)]
    if deadline is None or now < deadline + grace:
        return Judged("in_progress", None, None, False, done, total), []
    late = _evaluate(version, events, zone, anchor, now)
    done, total = late.progress.done, late.progress.total
    missed: Outcome = ("missed", False, deadline)
    if late.achieved_at is None:
        return Judged("missed", None, deadline, False, done, total), [missed]
    at = late.achieved_at
    return Judged("achieved", at, deadline, True, done, total), [missed, ("achieved", True, at)]


def _anchor(
    version: CompiledVersion, created_at: dt.datetime, events: Sequence[EventFact]
) -> dt.datetime | None:
    if version.anchor == Anchor.SIGNUP:
        return created_at
    assert version.anchor == Anchor.EVENT, "the oracle knows signup and event anchors"
    times = [event.occurred_at for event in events if event.name == version.anchor_event]
    return min(times, default=None)


def _evaluate(
    version: CompiledVersion,
    events: Sequence[EventFact],
    zone: ZoneInfo,
    start: dt.datetime,
    end: dt.datetime,
) -> Any:
    facts = Facts(events=events, zone=zone, start=start, end=end, traits={}, milestones={})
    return evaluate(version.condition, facts)


def facts_of(customer: Customer, calls: Iterable[Call]) -> list[EventFact]:
    """``calls`` of ``customer`` as the facts the evaluator reads (each message once)."""
    unique = {call.message_id: call for call in calls if call.user == customer.external_id}
    return [
        EventFact(
            name=call.event,
            occurred_at=call.at,
            customer_id=customer.pk,
            properties={} if call.amount is None else {"amount": call.amount},
        )
        for call in unique.values()
    ]


def expected_state(
    versions: Mapping[str, CompiledVersion],
    customers: Sequence[Customer],
    calls: Sequence[Call],
    *,
    now: dt.datetime,
    grace: dt.timedelta,
) -> tuple[dict[tuple[str, str], Judged], list[tuple[str, str, str, bool, dt.datetime]]]:
    """Progress rows and outcomes (key, user, kind, is_late, occurred_at) from scratch."""
    rows: dict[tuple[str, str], Judged] = {}
    outcomes: list[tuple[str, str, str, bool, dt.datetime]] = []
    for customer in customers:
        assert customer.external_id is not None
        facts = facts_of(customer, calls)
        for key, version in versions.items():
            row, found = judge(
                version,
                created_at=customer.created_at,
                zone=customer.zone,
                events=facts,
                now=now,
                grace=grace,
            )
            if row is not None:
                rows[(key, customer.external_id)] = row
            outcomes.extend((key, customer.external_id, *outcome) for outcome in found)
    return rows, sorted(outcomes)


# --- What the evaluator stored ------------------------------------------------------------


def progress_state() -> dict[tuple[str, str], Judged]:
    """Every customer progress row, keyed by (milestone key, user), as the oracle shapes it."""
    users = dict(Customer.objects.values_list("pk", "external_id"))
    found: dict[tuple[str, str], Judged] = {}
    for row in Progress.objects.select_related("definition"):
        found[(row.definition.key, users[row.subject_id])] = Judged(
            row.state, row.achieved_at, row.missed_at, row.is_late, row.done, row.total
        )
    return found


def outcome_state() -> list[tuple[str, str, str, bool, dt.datetime]]:
    users = dict(Customer.objects.values_list("pk", "external_id"))
    rows = MilestoneOutcome.objects.values_list(
        "definition__key", "subject_id", "kind", "is_late", "occurred_at"
    )
    return sorted((key, users[s], kind, late, at) for key, s, kind, late, at in rows)


def full_dump() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every column of every progress and outcome row: what "changes nothing" compares."""
    progress = list(Progress.objects.order_by("pk").values())
    outcomes = list(MilestoneOutcome.objects.order_by("pk").values())
    return progress, outcomes
