"""Dry run of a journey: who would have entered it over the last hours, and what the first
run would send each of them if they entered now.

Reads history and writes nothing (no enrollment, step run, message or lock). The working
copy is judged as a would-be version, so a marketer sees the effect of an edit before going
live. Triggers are read from what is stored: milestone outcomes of the trigger's milestone
and kind, events of the trigger's name matching its filters, lifecycle stage changes to the
trigger's stage. Each is judged exactly as ``journeys.enrollment.enroll`` judges it, with its
own functions: entry rules, then the re-entry policy against the customer's enrollments in
this journey (any version), then the holdout. A trigger that already enrolled the customer
counts as "already entered".

For each customer who would enter, the graph is walked from the first step to the first wait
or exit, as the runner would on the first run (branches read the customer's traits, stage
and milestone states; splits use the same stable assignment), and every send step is put to
the delivery policy (``messaging.snapshot.snapshot_read`` + ``messaging.policy.decide``, as
``messaging.services.messages_request`` does) to say which channel it would use, or why it
would be deferred or suppressed; the notify steps passed are listed. Reading is bounded: at
most ``limit`` triggers (the answer says when it stopped early), customers in batches.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from django.utils import timezone

from customers.models import Customer, Event
from journeys.enrollment import (
    Entry,
    entries_latest,
    entry_eligible,
    entry_matches,
    reentry_allowed,
)
from journeys.graph import (
    BranchStep,
    DurationWait,
    ExitStep,
    Facts,
    Graph,
    LocalTimeWait,
    NotifyStep,
    SendStep,
    SplitStep,
    Step,
    UntilEvent,
    UntilWait,
    UpdateStep,
    branch_choose,
    graph_parse,
    is_holdout,
    split_variant,
)
from journeys.models import Enrollment, Journey, JourneyVersion
from journeys.runner import MAX_STEPS_PER_RUN
from journeys.services import DEFINITION_FIELDS, definition_check
from messaging import policy
from messaging.explain import channel_label, message_reason
from messaging.models import Template
from messaging.snapshot import snapshot_read
from milestones.models import MilestoneDefinition, MilestoneOutcome, Progress, StageChange

WOULD_ENTER: Final = "would_enter"
HELD_OUT: Final = "held_out"
INELIGIBLE: Final = "ineligible"
ALREADY_ENTERED: Final = "already_entered"
BUCKETS: Final = (WOULD_ENTER, HELD_OUT, INELIGIBLE, ALREADY_ENTERED)
#: A planned send the runner could not hand to the outbox: a template is missing or inactive.
REFUSED: Final = "refused"
DEFAULT_HOURS: Final = 24
_BATCH: Final = 500


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedMessage:
    step: str
    templates: tuple[str, ...]
    status: str  # queued | deferred | suppressed (the policy's words) | refused
    channel: str
    reason: str  # a code from ``messaging.reasons``, "" when it would go
    sentence: str


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What the first run of a would-be enrollment does."""

    steps: tuple[str, ...]  # the keys walked, in order, the last one where it stops
    stop: str  # where and why the first run stops, in words
    messages: tuple[PlannedMessage, ...]
    notices: tuple[str, ...] = ()  # the notify steps passed, in words


@dataclasses.dataclass(slots=True)
class Candidate:
    customer_id: int
    entry_key: str
    at: dt.datetime
    bucket: str
    plan: Plan | None = None


@dataclasses.dataclass(slots=True, kw_only=True)
class JourneyDryRun:
    since: dt.datetime
    until: dt.datetime
    triggers: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    samples: dict[str, list[Candidate]] = dataclasses.field(
        default_factory=lambda: {bucket: [] for bucket in BUCKETS}
    )
    #: (status, channel, reason) of every planned message of everyone who would enter.
    deliveries: Counter[tuple[str, str, str]] = dataclasses.field(default_factory=Counter)
    is_truncated: bool = False


def journey_dry_run(
    *,
    journey: Journey,
    hours: int = DEFAULT_HOURS,
    now: dt.datetime | None = None,
    limit: int = 10_000,
    sample_size: int = 10,
) -> JourneyDryRun:
    """Judge the triggers of the last ``hours`` against the journey's working copy; writes
    nothing. Raises ``JourneyInvalid`` when the working copy does not validate."""
    values = {name: getattr(journey, name) for name in DEFINITION_FIELDS}
    definition_check(values)
    version = JourneyVersion(journey=journey, number=0, **values)
    graph = graph_parse(version.steps)
    now = now or timezone.now()
    result = JourneyDryRun(since=now - dt.timedelta(hours=hours), until=now)
    entries, result.is_truncated = _entries(version, result.since, now, limit)
    candidates = _judge(journey, version, entries)
    result.triggers = len(candidates)
    entering = [c for c in candidates if c.bucket == WOULD_ENTER]
    for start in range(0, len(entering), _BATCH):
        _plan(journey, version, graph, entering[start : start + _BATCH], now, result)
    for candidate in candidates:
        result.counts[candidate.bucket] += 1
        if len(result.samples[candidate.bucket]) < sample_size:
            result.samples[candidate.bucket].append(candidate)
    return result


# --- Triggers -------------------------------------------------------------------------------


def _entries(
    version: JourneyVersion, since: dt.datetime, until: dt.datetime, limit: int
) -> tuple[list[Entry], bool]:
    """The stored triggers of the window, oldest first, as the receivers would make them;
    and whether there were more than ``limit``."""
    trigger: Mapping[str, Any] = version.trigger
    kind = str(trigger["kind"])
    entries: list[Entry]
    if kind in ("milestone_achieved", "milestone_missed"):
        entries = _outcome_entries(kind, str(trigger["milestone"]), since, until, limit + 1)
    elif kind == "event":
        entries = _event_entries(str(trigger["event"]), since, until, limit + 1)
    else:
        entries = _stage_entries(str(trigger["to"]), since, until, limit + 1)
    return entries[:limit], len(entries) > limit


def _outcome_entries(
    kind: str, milestone: str, since: dt.datetime, until: dt.datetime, limit: int
) -> list[Entry]:
    definition_id = (
        MilestoneDefinition.objects.filter(key=milestone).values_list("pk", flat=True).first()
    )
    if definition_id is None:
        return []
    rows = (
        MilestoneOutcome.objects.filter(
            definition_id=definition_id,
            kind=kind.removeprefix("milestone_"),
            unit="customer",
            occurred_at__gt=since,
            occurred_at__lte=until,
        )
        .order_by("occurred_at", "pk")
        .values_list("pk", "subject_id", "occurred_at")[:limit]
    )
    return [Entry(subject, kind, milestone, f"outcome:{pk}", at) for pk, subject, at in rows]


def _event_entries(name: str, since: dt.datetime, until: dt.datetime, limit: int) -> list[Entry]:
    rows = (
        Event.objects.filter(name=name, occurred_at__gt=since, occurred_at__lte=until)
        .order_by("occurred_at", "pk")
        .values_list("pk", "customer_id", "occurred_at", "properties")[:limit]
    )
    return [
        Entry(customer, "event", name, f"event:{pk}", at, properties=properties or {})
        for pk, customer, at, properties in rows
    ]


def _stage_entries(stage: str, since: dt.datetime, until: dt.datetime, limit: int) -> list[Entry]:
    rows = (
        StageChange.objects.filter(to_stage=stage, changed_at__gt=since, changed_at__lte=until)
        .order_by("changed_at", "pk")
        .values_list("customer_id", "changed_at")[:limit]
    )
    return [
        Entry(customer, "stage_changed", stage, f"stage:{customer}:{stage}:{at.isoformat()}", at)
        for customer, at in rows
    ]


# --- Who would enter ------------------------------------------------------------------------


def _judge(journey: Journey, version: JourneyVersion, entries: Sequence[Entry]) -> list[Candidate]:
    """Each matching trigger's bucket, judged in time order as ``enroll`` judges it."""
    ids = sorted({e.customer_id for e in entries})
    customers = {c.pk: c for c in Customer.objects.filter(pk__in=ids)}
    latest = {customer: at for (_, customer), at in entries_latest(ids, {journey.pk}).items()}
    used = set(
        Enrollment.objects.filter(
            journey_id=journey.pk, customer_id__in=ids, entry_key__in=[e.entry_key for e in entries]
        ).values_list("customer_id", "entry_key")
    )
    candidates = []
    for entry in entries:
        customer = customers.get(entry.customer_id)
        if customer is None or not entry_matches(version, entry):
            continue
        if (customer.pk, entry.entry_key) in used:
            bucket = ALREADY_ENTERED
        elif not entry_eligible(version, customer):
            bucket = INELIGIBLE
        elif not reentry_allowed(version, latest.get(customer.pk), entry.at):
            bucket = ALREADY_ENTERED
        elif is_holdout(journey.key, customer.pk, float(version.holdout_percent)):
            bucket, latest[customer.pk] = HELD_OUT, entry.at
        else:
            bucket, latest[customer.pk] = WOULD_ENTER, entry.at
        candidates.append(Candidate(customer.pk, entry.entry_key, entry.at, bucket))
    return candidates


# --- What they would receive ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Walk:
    steps: tuple[str, ...]
    stop: str
    sends: tuple[SendStep, ...]
    notices: tuple[str, ...]


def _plan(
    journey: Journey,
    version: JourneyVersion,
    graph: Graph,
    batch: Sequence[Candidate],
    now: dt.datetime,
    result: JourneyDryRun,
) -> None:
    ids = sorted({c.customer_id for c in batch})
    customers = {c.pk: c for c in Customer.objects.filter(pk__in=ids)}
    states = _milestone_states(graph, ids)
    walks = {
        id(c): _walk(graph, journey.key, customers[c.customer_id], states.get(c.customer_id, {}))
        for c in batch
    }
    templates = {
        t.key: t
        for t in Template.objects.filter(key__in=graph.templates()).select_related(
            "active_version", "topic"
        )
    }
    asks: list[tuple[policy.Request, SendStep]] = []
    planned: dict[str, PlannedMessage] = {}
    priority = version.priority
    for candidate in batch:
        for step in walks[id(candidate)].sends:
            key = _key(candidate, step)
            ask = _request(key, candidate.customer_id, step, templates, journey.key, priority)
            if isinstance(ask, PlannedMessage):
                planned[key] = ask
            else:
                asks.append((ask, step))
    if asks:
        # One decision over the whole batch, as the runner hands its batch to the outbox:
        # a customer's earlier send in the same run holds a cap slot the later one sees.
        snapshot = snapshot_read(ids, now)
        requests = [ask for ask, _ in asks]
        decisions = policy.decide(requests, snapshot.audiences, snapshot.rules, now)
        for (ask, step), decision in zip(asks, decisions, strict=True):
            planned[ask.key] = _planned(step, decision)
    for candidate in batch:
        walk = walks[id(candidate)]
        messages = tuple(planned[_key(candidate, step)] for step in walk.sends)
        candidate.plan = Plan(walk.steps, walk.stop, messages, walk.notices)
        for message in messages:
            result.deliveries[(message.status, message.channel, message.reason)] += 1


def _key(candidate: Candidate, step: SendStep) -> str:
    return f"dry-run:{candidate.customer_id}:{candidate.entry_key}:{step.key}"


def _request(
    key: str,
    customer_id: int,
    step: SendStep,
    templates: Mapping[str, Template],
    journey_key: str,
    priority: int,
) -> policy.Request | PlannedMessage:
    """The policy request ``messages_request`` would make for this send step, or the
    refusal it would raise for a missing or inactive template."""
    channels: dict[str, None] = {}
    for name in step.templates:
        template = templates.get(name)
        if template is None or template.active_version is None:
            why = "does not exist" if template is None else "has no active version"
            return PlannedMessage(
                step.key,
                step.templates,
                REFUSED,
                "",
                "",
                f"Template “{name}” {why}: nothing would be sent at this step.",
            )
        channels.setdefault(template.channel)
    topic = templates[step.templates[0]].topic
    return policy.Request(
        key=key,
        customer_id=customer_id,
        channels=tuple(channels),
        topic=topic.key,
        is_transactional=topic.is_transactional,
        priority=step.priority if step.priority is not None else priority,
        journey=journey_key,
    )


def _planned(step: SendStep, decision: policy.Decision) -> PlannedMessage:
    explanation = [
        {"channel": c.channel, "reason": c.reason, "detail": c.detail} for c in decision.checks
    ]
    if decision.status == policy.QUEUED:
        sentence = f"Would go by {channel_label(decision.channel)}."
    else:
        after = decision.send_after
        until = "" if after is None else f"{after.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
        sentence = message_reason(decision.reason, explanation, until=until)
    return PlannedMessage(
        step.key, step.templates, decision.status, decision.channel, decision.reason, sentence
    )


def _walk(
    graph: Graph, journey_key: str, customer: Customer, milestone_states: Mapping[str, str]
) -> _Walk:
    """The first run from the first step, as the runner takes it: through sends, branches,
    splits and updates to the first wait or exit."""
    facts = Facts(
        traits={
            **customer.traits,
            "plan": customer.plan,
            "region": customer.region,
            "status": customer.status,
            "email": customer.email,
        },
        stage=customer.lifecycle_stage,
        milestone_states=milestone_states,
        engagement={},  # nothing of this enrollment has been sent before its first run
    )
    steps: list[str] = []
    sends: list[SendStep] = []
    notices: list[str] = []
    step: Step = graph.first
    for _ in range(MAX_STEPS_PER_RUN):
        steps.append(step.key)
        stop = _stop(step)
        if stop:
            return _Walk(tuple(steps), stop, tuple(sends), tuple(notices))
        if isinstance(step, SendStep):
            sends.append(step)
            step = graph.step(step.next)
        elif isinstance(step, BranchStep):
            step = graph.step(branch_choose(step, facts))
        elif isinstance(step, SplitStep):
            step = graph.step(split_variant(journey_key, step.key, customer.pk, step.variants).next)
        elif isinstance(step, NotifyStep):
            template = f" with template “{step.template}”" if step.template else ""
            notices.append(f"“{step.key}” notifies {step.to}{template}")
            step = graph.step(step.next)
        elif isinstance(step, UpdateStep):
            step = graph.step(step.next)
    long_path = "carries on in the next run (a long path)"
    return _Walk(tuple(steps), long_path, tuple(sends), tuple(notices))


def _stop(step: Step) -> str:
    """Where the first run stops, in words; "" for a step it passes through."""
    if isinstance(step, ExitStep):
        return f"ends at “{step.key}” ({step.outcome})"
    if isinstance(step, DurationWait):
        return f"waits at “{step.key}” for {_duration_words(step.duration)}"
    if isinstance(step, LocalTimeWait):
        return f"waits at “{step.key}” until {step.at:%H:%M} in the customer's time zone"
    if isinstance(step, UntilWait):
        until = step.until
        what = (
            f"event “{until.event}”"
            if isinstance(until, UntilEvent)
            else f"milestone “{until.milestone}” {until.state}"
        )
        return f"waits at “{step.key}” for {what}, at most {_duration_words(step.timeout)}"
    return ""


def _duration_words(value: dt.timedelta) -> str:
    minutes = int(value.total_seconds()) // 60
    parts = []
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        amount, minutes = divmod(minutes, size)
        if amount:
            parts.append(f"{amount} {unit}{'' if amount == 1 else 's'}")
    return " ".join(parts)


def _milestone_states(graph: Graph, customer_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """Each customer's state of every milestone a branch names (active versions), as the
    runner reads them."""
    keys = sorted(graph.milestones())
    if not keys:
        return {}
    active = dict(
        MilestoneDefinition.objects.filter(key__in=keys, active_version__isnull=False).values_list(
            "active_version_id", "key"
        )
    )
    states: dict[int, dict[str, str]] = {}
    rows = Progress.objects.filter(
        unit="customer", subject_id__in=list(customer_ids), version_id__in=list(active)
    ).values_list("version_id", "subject_id", "state")
    for version_id, subject_id, state in rows:
        states.setdefault(subject_id, {})[active[version_id]] = state
    return states
