"""Journey writes: the working copy, going live (validated, snapshotted as an immutable
version), pausing and archiving — each with its change-log row in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from journeys.graph import GraphError, NotifyStep, graph_parse
from journeys.models import Journey, JourneyChange, JourneyStatus, JourneyVersion, Team
from journeys.rules import RuleError, holdout_check, reentry_check, rules_check
from messaging.models import Template, TemplateStatus
from milestones.models import DefinitionStatus, MilestoneDefinition

#: The fields a version snapshots (and a change compares).
DEFINITION_FIELDS: Final = (
    "trigger",
    "entry_rules",
    "reentry",
    "reentry_days",
    "priority",
    "holdout_percent",
    "steps",
    "goal",
    "exit_when",
)
_EDITABLE: Final = ("name", "description", *DEFINITION_FIELDS)


class JourneyInvalid(ValueError):
    """A journey that cannot be saved or go live; the message names the bad part."""


def _user_id(user: AbstractBaseUser | None) -> int | None:
    return int(user.pk) if user is not None and user.pk is not None else None


def definition_check(values: Mapping[str, Any]) -> None:
    """Shape checks that need no database: steps, trigger, rules, re-entry, holdout."""
    try:
        graph_parse(values["steps"])
        rules_check(
            trigger=values["trigger"],
            entry_rules=values.get("entry_rules", {}),
            goal=values.get("goal"),
            exit_when=values.get("exit_when", []),
        )
        reentry_check(str(values.get("reentry", "never")), values.get("reentry_days"))
        holdout_check(values.get("holdout_percent", 0))
    except GraphError as exc:
        raise JourneyInvalid(f"steps{exc}" if str(exc).startswith("$") else str(exc)) from exc
    except RuleError as exc:
        raise JourneyInvalid(str(exc)) from exc


def journey_save(*, key: str, user: AbstractBaseUser | None = None, **fields: Any) -> Journey:
    """Create a journey or update its working copy (validated). A live journey keeps running
    its active version until it goes live again."""
    unknown = sorted(set(fields) - set(_EDITABLE))
    if unknown:
        raise JourneyInvalid(f"unknown field(s): {', '.join(unknown)}")
    with transaction.atomic():
        journey = Journey.objects.select_for_update().filter(key=key).first()
        before = {f: _plain(getattr(journey, f)) for f in _EDITABLE} if journey else {}
        if journey is None:
            journey = Journey(key=key, **fields)
        else:
            for name, value in fields.items():
                setattr(journey, name, value)
        definition_check({f: getattr(journey, f) for f in DEFINITION_FIELDS})
        journey.updated_at = timezone.now()
        journey.save()
        after = {f: _plain(getattr(journey, f)) for f in _EDITABLE}
        diff = {f: [before.get(f), after[f]] for f in _EDITABLE if before.get(f) != after[f]}
        if diff:
            _log(journey, "created" if not before else "edited", diff, user)
    return journey


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _log(journey: Journey, action: str, changes: dict[str, Any], user: Any) -> None:
    JourneyChange.objects.create(
        journey=journey, action=action, changes=changes, user_id=_user_id(user)
    )


def go_live_problems(journey: Journey) -> list[str]:
    """What stops a journey from going live, beyond its shape: the templates its steps send
    must be active, the milestones it names must exist and be active."""
    definition_check({f: getattr(journey, f) for f in DEFINITION_FIELDS})
    graph = graph_parse(journey.steps)
    active = dict(
        Template.objects.filter(
            key__in=graph.templates(), status=TemplateStatus.ACTIVE
        ).values_list("key", "channel")
    )
    problems = [
        f"template {key!r} is not active" for key in sorted(graph.templates() - set(active))
    ]
    notifies = [step for step in graph.steps if isinstance(step, NotifyStep)]
    problems += [
        f"step {step.key!r}: template {step.template!r} is a {active[step.template]} template; "
        "a notify step sends email"
        for step in notifies
        if step.template in active and active[step.template] != "email"
    ]
    teams = {
        team.key
        for team in Team.objects.filter(key__in={step.to for step in notifies})
        if team.email or team.webhook_url
    }
    problems += [
        f"step {step.key!r}: no team {step.to!r} with an email or webhook is set up"
        for step in notifies
        if step.to in ("sales", "support") and step.to not in teams
    ]
    refs = rules_check(
        trigger=journey.trigger,
        entry_rules=journey.entry_rules,
        goal=journey.goal,
        exit_when=journey.exit_when,
    )
    named = set(refs.milestones) | set(graph.milestones())
    live = set(
        MilestoneDefinition.objects.filter(
            key__in=named, status=DefinitionStatus.ACTIVE
        ).values_list("key", flat=True)
    )
    problems += [f"milestone {key!r} is not active" for key in sorted(named - live)]
    return problems


def journey_go_live(*, journey_id: int, user: AbstractBaseUser | None = None) -> JourneyVersion:
    """Validate, snapshot the working copy as the next version (unless it is the active one
    unchanged) and go live. Running enrollments finish on the version they started on."""
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey_id)
        if journey.status == JourneyStatus.ARCHIVED:
            raise JourneyInvalid("an archived journey cannot go live; copy it instead")
        problems = go_live_problems(journey)
        if problems:
            raise JourneyInvalid("; ".join(problems))
        version = journey.active_version
        if version is None or any(
            _plain(getattr(version, f)) != _plain(getattr(journey, f)) for f in DEFINITION_FIELDS
        ):
            number = (journey.versions.aggregate(top=Max("number"))["top"] or 0) + 1
            version = JourneyVersion.objects.create(
                journey=journey,
                number=number,
                created_by_id=_user_id(user),
                **{f: getattr(journey, f) for f in DEFINITION_FIELDS},
            )
        journey.active_version, journey.status = version, JourneyStatus.LIVE
        journey.updated_at = timezone.now()
        journey.save(update_fields=["active_version", "status", "updated_at"])
        _log(journey, "went live", {"version": version.number}, user)
    return version


def journey_pause(*, journey_id: int, user: AbstractBaseUser | None = None) -> None:
    """Stop enrolling and advancing; enrollments keep their place until it resumes."""
    _status(journey_id, JourneyStatus.PAUSED, {JourneyStatus.LIVE}, "paused", user)


def journey_archive(*, journey_id: int, user: AbstractBaseUser | None = None) -> None:
    _status(
        journey_id,
        JourneyStatus.ARCHIVED,
        {JourneyStatus.DRAFT, JourneyStatus.LIVE, JourneyStatus.PAUSED},
        "archived",
        user,
    )


def _status(journey_id: int, status: str, allowed: set[str], action: str, user: Any) -> None:
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey_id)
        if journey.status not in allowed:
            raise JourneyInvalid(f"a {journey.status} journey cannot be {action}")
        journey.status, journey.updated_at = status, timezone.now()
        journey.save(update_fields=["status", "updated_at"])
        _log(journey, action, {}, user)
