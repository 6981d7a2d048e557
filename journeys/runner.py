"""The runner: advance due enrollments in bounded batches (DESIGN.md §2.1, §2.4).

One transaction per batch: claim due enrollments of live journeys with
``FOR UPDATE SKIP LOCKED`` (any number of workers share the work without doing a step twice),
walk each one through its steps until it waits or ends, hand every send to the messaging
outbox in one ``messages_request`` call with the step run's key as the idempotency key, and
write the step log and the enrollments' new positions. A worker killed mid-batch rolls the
whole batch back — steps, step runs and messages together — so nothing is lost and nothing
is sent twice; messages go to the providers only after commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.cache import cached
from config.durability import commit_async
from config.plans import planned_each_time
from config.recordset import recordset
from customers.models import Customer
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
    UntilWait,
    UpdateStep,
    branch_choose,
    graph_parse,
    split_variant,
    timeout_at,
    wait_until,
)
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStatus,
    JourneyVersion,
    Notice,
    StepRun,
    StepRunStatus,
    Team,
)
from journeys.notices import notices_write, notify_notices, recipients_resolve, teams_load
from messaging.models import Message
from messaging.services import SendRequest, messages_request
from milestones.models import MilestoneDefinition, Progress
from milestones.stages import stages_set

#: Steps one enrollment may take in one run (the graph is acyclic, so this only splits a
#: very long straight path over several runs).
MAX_STEPS_PER_RUN: Final = 50
_ENGAGEMENT: Final = {
    "sent": ("sent",),
    "delivered": ("sent", "delivered"),
    "opened": ("sent", "delivered", "opened"),
    "clicked": ("sent", "delivered", "opened", "clicked"),
}


def step_run_key(enrollment_id: int, step_key: str, attempt: int = 1) -> str:
    """The idempotency key of one step run; a send step hands it to the outbox."""
    return f"journey:{enrollment_id}:{step_key}:{attempt}"


@dataclasses.dataclass(slots=True)
class _Batch:
    now: dt.datetime
    sends: list[SendRequest] = dataclasses.field(default_factory=list)
    runs: list[Run] = dataclasses.field(default_factory=list)
    stages: dict[int, str] = dataclasses.field(default_factory=dict)
    traits: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    notices: list[Notice] = dataclasses.field(default_factory=list)
    teams: dict[str, Team] | None = None  # read once per batch, when a notify step runs


def enrollments_advance(
    *,
    now: dt.datetime | None = None,
    batch: int | None = None,
    ids: Collection[int] | None = None,
    send_here: bool = False,
) -> int:
    """Advance up to ``batch`` due enrollments (only those of ``ids`` if given: the ones just
    enrolled); returns how many were claimed. ``send_here``: see ``messages_request``."""
    now = now or timezone.now()
    size = batch or settings.JOURNEYS_ADVANCE_BATCH
    with transaction.atomic():
        commit_async()  # derived work: see config/durability.py
        due = _claim(now, size, ids)
        if not due:
            return 0
        _definitions_attach(due)
        work = _Batch(now)
        for enrollment in due:
            _walk(enrollment, version_graph(enrollment.version), work)
        _apply_updates(work)
        # Customers an update step changed are read again, so a send after it sees it.
        changed = work.traits.keys() | work.stages.keys()
        customers = {e.customer_id: e.customer for e in due if e.customer_id not in changed}
        ids = (
            messages_request(work.sends, now=now, send_here=send_here, customers=customers)
            if work.sends
            else []
        )
        sent = {request.key: pk for request, pk in zip(work.sends, ids, strict=True)}
        for run in work.runs:
            run.message_id = sent.get(run.idempotency_key)
        step_runs_insert(work.runs)
        notices_write(work.notices)
        enrollments_write(due)
    return len(due)


_FIELDS: Final = [
    "state",
    "current_step",
    "next_run_at",
    "step_started_at",
    "variants",
    "finished_at",
    "exit_reason",
    "updated_at",
]
_GRAPHS: dict[int, Graph] = {}
_VERSIONS: dict[int, JourneyVersion] = {}


@cached(Journey)
def _journeys() -> dict[int, Journey]:
    return Journey.objects.in_bulk()


def version_graph(version: JourneyVersion) -> Graph:
    """Versions are immutable: each process parses a version's steps once."""
    if version.pk not in _GRAPHS:
        _GRAPHS[version.pk] = graph_parse(version.steps)
    return _GRAPHS[version.pk]


def _claim(now: dt.datetime, size: int, only: Collection[int] | None = None) -> list[Enrollment]:
    """Lock up to ``size`` due enrollments, oldest first, then load them with their customers.

    Two statements on purpose: the lock walks the due index and stops after ``size`` rows.
    Ordered by ``(next_run_at, pk)`` or joined to customers, PostgreSQL sorted every due row
    on each claim (a backlog enrolled in one transaction shares one ``next_run_at``)."""
    due = Enrollment.objects.select_for_update(skip_locked=True, of=("self",)).filter(
        state__in=(EnrollmentState.ACTIVE, EnrollmentState.WAITING),
        next_run_at__lte=now,
        journey__status=JourneyStatus.LIVE,
    )
    if only is not None:
        # Just-enrolled ids (advance on entry): few rows by primary key, so lock and load
        # them in one statement.
        found = due.filter(pk__any=list(only)).select_related("customer__account")
        return sorted(found.order_by("next_run_at")[:size], key=lambda e: (e.next_run_at, e.pk))
    ids = list(due.order_by("next_run_at").values_list("pk", flat=True)[:size])
    if not ids:
        return []
    loaded = Enrollment.objects.filter(pk__any=ids).select_related("customer__account")
    return sorted(loaded, key=lambda e: (e.next_run_at, e.pk))


def _definitions_attach(enrollments: list[Enrollment]) -> None:
    """Give each enrollment its version and journey without a join per row: versions are
    immutable, so each process reads one once; journeys (their key and name) come from a
    per-process cache — the claim itself reads their status."""
    missing = {e.version_id for e in enrollments} - _VERSIONS.keys()
    if missing:
        _VERSIONS.update((v.pk, v) for v in JourneyVersion.objects.filter(pk__in=missing))
    journeys = _journeys.get()
    missing = {e.journey_id for e in enrollments} - journeys.keys()
    if missing:  # made in another process since the cache was loaded
        journeys = {**journeys, **Journey.objects.in_bulk(missing)}
    for enrollment in enrollments:
        enrollment.version = _VERSIONS[enrollment.version_id]
        enrollment.journey = journeys[enrollment.journey_id]


_STEP_RUN_FIELDS: Final = [
    "enrollment",
    "step_key",
    "attempt",
    "idempotency_key",
    "status",
    "result",
    "message_id",
    "at",
]


@functools.cache
def _update_sql() -> str:
    _, typed = recordset(Enrollment, ["id", *_FIELDS])
    assignments = ", ".join(f"{c} = t.{c}" for c in recordset(Enrollment, _FIELDS)[0])
    return (
        f"UPDATE {Enrollment._meta.db_table} e SET {assignments} "  # noqa: S608 - model names
        f"FROM jsonb_to_recordset(%s::jsonb) AS t({typed}) "
        # The id array lets the planner probe the primary key: jsonb_to_recordset is
        # estimated at 100 rows whatever it holds, which can pick a hash join over a
        # sequential scan of the whole table (and see config/plans.py).
        "WHERE e.id = t.id AND e.id = ANY(%s::bigint[])"
    )


@functools.cache
def _insert_sql() -> str:
    columns, typed = recordset(StepRun, _STEP_RUN_FIELDS)
    listed = ", ".join(columns)
    return (
        f"INSERT INTO {StepRun._meta.db_table} ({listed}) "  # noqa: S608 - the model's names
        f"SELECT {listed} FROM jsonb_to_recordset(%s::jsonb) AS t({typed}) "
        "ON CONFLICT DO NOTHING"
    )


def _json(rows: list[dict[str, Any]]) -> str:
    # Non-string keys as ``json.dumps`` (the JSONField's encoder) would write them.
    return orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode()


def enrollments_write(enrollments: Sequence[Enrollment]) -> None:
    """Store the enrollments' new positions in one statement (PostgreSQL: the batch travels
    as one JSON document, where ``bulk_update``'s CASE per field and row cost more than the
    rest of the batch together)."""
    if connection.vendor != "postgresql":
        Enrollment.objects.bulk_update(enrollments, _FIELDS)
        return
    rows = [{"id": e.pk, **{name: getattr(e, name) for name in _FIELDS}} for e in enrollments]
    with planned_each_time(), connection.cursor() as cursor:
        cursor.execute(_update_sql(), [_json(rows), [e.pk for e in enrollments]])


@dataclasses.dataclass(slots=True)
class Run:
    """A step run as the runner logs it (a model instance costs several times more to
    build, and a batch logs one or two per enrollment)."""

    enrollment_id: int
    step_key: str
    idempotency_key: str
    result: dict[str, Any]
    at: dt.datetime
    status: str = StepRunStatus.DONE
    attempt: int = 1
    message_id: int | None = None


def step_runs_insert(runs: Sequence[Run]) -> None:
    """Append to the step log in one statement; a run already logged (its key) is kept."""
    if not runs:
        return
    if connection.vendor != "postgresql":
        StepRun.objects.bulk_create(
            [StepRun(**dataclasses.asdict(run)) for run in runs], ignore_conflicts=True
        )
        return
    # Columns are attribute names here (enrollment_id, message_id).
    columns, _ = recordset(StepRun, _STEP_RUN_FIELDS)
    rows = [{column: getattr(run, column) for column in columns} for run in runs]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(), [_json(rows)])


def _walk(enrollment: Enrollment, graph: Graph, work: _Batch) -> None:
    now = work.now
    enrollment.updated_at = now
    for _ in range(MAX_STEPS_PER_RUN):
        step = graph.step(enrollment.current_step)
        if isinstance(step, ExitStep):
            _log(enrollment, step.key, work)
            enrollment.state = (
                EnrollmentState.COMPLETED if step.outcome == "completed" else EnrollmentState.EXITED
            )
            enrollment.finished_at, enrollment.next_run_at = now, None
            enrollment.exit_reason = f"reached {step.key}"
            return
        if isinstance(step, DurationWait | LocalTimeWait | UntilWait):
            if enrollment.state != EnrollmentState.WAITING:
                enrollment.state, enrollment.step_started_at = EnrollmentState.WAITING, now
                enrollment.next_run_at = (
                    timeout_at(step, now)
                    if isinstance(step, UntilWait)
                    else wait_until(step, now, enrollment.customer.time_zone)
                )
                return
            # Due: the wait is over (an until-wait that is due has timed out; its event or
            # milestone ends it early through ``until_reached``).
            _log(enrollment, step.key, work, {"timed_out": isinstance(step, UntilWait)})
            enrollment.state = EnrollmentState.ACTIVE
            _move(enrollment, step.timeout_next if isinstance(step, UntilWait) else step.next, now)
            continue
        if isinstance(step, SendStep):
            key = step_run_key(enrollment.pk, step.key)
            work.sends.append(
                SendRequest(
                    key=key,
                    customer_id=enrollment.customer_id,
                    templates=step.templates,
                    priority=(
                        step.priority if step.priority is not None else enrollment.version.priority
                    ),
                    journey=enrollment.journey.key,
                    context={"journey": _journey_context(enrollment, step.key)},
                )
            )
            _log(enrollment, step.key, work, {"templates": list(step.templates)})
            _move(enrollment, step.next, now)
        elif isinstance(step, BranchStep):
            chosen = branch_choose(step, _facts(enrollment, graph, work))
            _log(enrollment, step.key, work, {"next": chosen})
            _move(enrollment, chosen, now)
        elif isinstance(step, SplitStep):
            variant = split_variant(
                enrollment.journey.key, step.key, enrollment.customer_id, step.variants
            )
            enrollment.variants = {**enrollment.variants, step.key: variant.name}
            _log(enrollment, step.key, work, {"variant": variant.name})
            _move(enrollment, variant.next, now)
        elif isinstance(step, UpdateStep):
            if step.set_stage:
                work.stages[enrollment.customer_id] = step.set_stage
            if step.set_traits:
                work.traits.setdefault(enrollment.customer_id, {}).update(step.set_traits)
            _log(enrollment, step.key, work, {"stage": step.set_stage or ""})
            _move(enrollment, step.next, now)
        elif isinstance(step, NotifyStep):
            _notify(enrollment, step, work)
            _move(enrollment, step.next, now)
    enrollment.next_run_at = now  # a long path: carry on in the next run


def _notify(enrollment: Enrollment, step: NotifyStep, work: _Batch) -> None:
    """Tell the account owner, a team, an address or a webhook. A recipient that cannot be
    resolved is logged on the step run; the customer's journey goes on either way."""
    if work.teams is None:
        work.teams = teams_load()
    recipients = recipients_resolve(step.to, enrollment.customer, work.teams)
    key = step_run_key(enrollment.pk, step.key)
    notices = notify_notices(enrollment, step, key, recipients, work.now)
    work.notices.extend(notices)
    result: dict[str, Any] = {"to": step.to, "notices": [n.to for n in notices]}
    if recipients.problem:
        result["error"] = recipients.problem
    _log(enrollment, step.key, work, result)


def _journey_context(enrollment: Enrollment, step_key: str) -> dict[str, str]:
    journey = enrollment.journey
    return {"key": journey.key, "name": journey.name, "step": step_key}


def _move(enrollment: Enrollment, step_key: str, now: dt.datetime) -> None:
    enrollment.current_step, enrollment.step_started_at = step_key, now
    enrollment.next_run_at = now


def _log(
    enrollment: Enrollment, step_key: str, work: _Batch, result: Mapping[str, Any] | None = None
) -> None:
    work.runs.append(
        Run(
            enrollment_id=enrollment.pk,
            step_key=step_key,
            idempotency_key=step_run_key(enrollment.pk, step_key),
            result=dict(result or {}),
            at=work.now,
        )
    )


def _facts(enrollment: Enrollment, graph: Graph, work: _Batch) -> Facts:
    """What a branch may look at, read for this enrollment only (branches are rare next to
    sends and waits), with the batch's own not yet written updates on top."""
    customer: Customer = enrollment.customer
    traits = {
        **customer.traits,
        **work.traits.get(customer.pk, {}),
        "plan": customer.plan,
        "region": customer.region,
        "status": customer.status,
        "email": customer.email,
    }
    keys = sorted(graph.milestones())
    states: dict[str, str] = {}
    if keys:
        active = dict(
            MilestoneDefinition.objects.filter(key__in=keys).values_list("active_version_id", "key")
        )
        for version_id, state in Progress.objects.filter(
            unit="customer", subject_id=customer.pk, version_id__in=[v for v in active if v]
        ).values_list("version_id", "state"):
            states[active[version_id]] = state
    sends = [s.key for s in graph.steps if isinstance(s, SendStep)]
    engagement: dict[str, frozenset[str]] = {}
    keyed = {step_run_key(enrollment.pk, key): key for key in sends}
    for idempotency_key, status in Message.objects.filter(
        idempotency_key__in=list(keyed)
    ).values_list("idempotency_key", "status"):
        engagement[keyed[idempotency_key]] = frozenset(_ENGAGEMENT.get(status, ()))
    stage = work.stages.get(customer.pk, customer.lifecycle_stage)
    return Facts(traits, stage, states, engagement)


def _apply_updates(work: _Batch) -> None:
    if work.stages:
        stages_set(work.stages, cause="journey update step")
    # In id order, as every other per-customer lock here, so two batches cannot deadlock.
    for customer_id, values in sorted(work.traits.items()):
        customer = Customer.objects.select_for_update().get(pk=customer_id)
        customer.traits = {**customer.traits, **values}
        customer.save(update_fields=["traits", "updated_at"])
