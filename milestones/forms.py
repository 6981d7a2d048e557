"""Admin forms: the condition editor, windows in words, lifecycle stage rules.

Forms only validate and explain; saving a definition is the services' job
(``milestones.admin`` calls ``definition_create`` / ``definition_update``). Validation is the
services' own ``definition_validate``, so the admin refuses exactly what the services refuse,
and each message lands on the field it is about.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any, Final

from django import forms
from django.forms.fields import InvalidJSONInput
from django.utils.dateparse import parse_duration
from django.utils.duration import duration_string

from milestones.conditions import ConditionError
from milestones.conditions.tree import MAX_DEPTH, MAX_NODES
from milestones.models import DefinitionStatus, LifecycleStage, MilestoneDefinition
from milestones.services import DefinitionInvalid, definition_validate
from milestones.stages import RULE_STATES, parse_stage_rules

# --- Fields -------------------------------------------------------------------------------


class PrettyJSONField(forms.JSONField):
    """A JSON textarea shown indented, whose syntax errors say where and what."""

    def __init__(self, *, rows: int = 14, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget",
            forms.Textarea(attrs={"class": "milestone-json", "rows": rows, "spellcheck": "false"}),
        )
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value.strip():
            try:
                json.loads(value, cls=self.decoder)
            except json.JSONDecodeError as exc:
                raise forms.ValidationError(
                    "Not valid JSON: %(reason)s at line %(line)s, column %(column)s.",
                    code="invalid",
                    params={"reason": exc.msg, "line": exc.lineno, "column": exc.colno},
                ) from exc
        return super().to_python(value)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        if value is None:
            return ""  # an empty editor, not the word null
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


_WINDOW_PART: Final = re.compile(
    r"(?P<amount>\d+)\s*(?P<unit>weeks?|w|days?|d|hours?|h|minutes?|mins?|m)(?![a-z])",
    re.IGNORECASE,
)
_WINDOW_UNITS: Final = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


class WindowField(forms.DurationField):
    """A duration written as words (``7 days``, ``36h``, ``2 weeks 3 days``) or ``D HH:MM:SS``."""

    default_error_messages = {
        "invalid": 'Enter a duration such as "7 days", "36 hours" or "2 weeks".',
    }

    def to_python(self, value: Any) -> dt.timedelta | None:
        if isinstance(value, dt.timedelta):
            return value
        if value in self.empty_values:
            return None
        text = str(value).strip().replace(",", " ")
        parts = list(_WINDOW_PART.finditer(text))
        if parts and _WINDOW_PART.sub("", text).strip() == "":
            amounts: dict[str, int] = {}
            for part in parts:
                unit = _WINDOW_UNITS[part["unit"][0].lower()]
                amounts[unit] = amounts.get(unit, 0) + int(part["amount"])
            return dt.timedelta(**amounts)
        parsed = parse_duration(text)
        if parsed is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return parsed

    def prepare_value(self, value: Any) -> Any:
        return window_text(value) if isinstance(value, dt.timedelta) else value


def window_text(value: dt.timedelta) -> str:
    """``7 days``, ``36 hours``, ``90 minutes``; anything finer in Django's duration format."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        seconds = value.total_seconds()
        if value.microseconds == 0 and seconds > 0 and seconds % size == 0:
            amount = int(seconds // size)
            return f"{amount} {unit}{'' if amount == 1 else 's'}"
    return duration_string(value)


# --- The condition editor's help panel ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ConditionType:
    type: str
    summary: str
    example: dict[str, Any]

    @property
    def example_json(self) -> str:
        return json.dumps(self.example, indent=2)


_REPORTS_THIS_WEEK: Final = {
    "type": "event_count",
    "event": "Report Created",
    "at_least": 3,
    "within": {"days": 7},
}
_INVITED: Final = {"type": "event_count", "event": "Teammate Invited", "at_least": 1}

#: Every condition type the parser accepts, with an example that parses.
CONDITION_TYPES: Final = (
    ConditionType(
        "event_count",
        "At least N events (optionally filtered by properties, all within a rolling window).",
        _REPORTS_THIS_WEEK,
    ),
    ConditionType(
        "distinct_days",
        "Events on at least N different local calendar days (the subject's time zone).",
        {"type": "distinct_days", "event": "App Opened", "days": 5, "within": {"days": 14}},
    ),
    ConditionType(
        "streak",
        'N consecutive days or ISO weeks (Monday start) with the event; "unit": "day"|"week".',
        {"type": "streak", "event": "Check-in Completed", "periods": 4, "unit": "week"},
    ),
    ConditionType(
        "property_sum",
        "The sum of a numeric event property reaches at least N (refunds may be negative).",
        {
            "type": "property_sum",
            "event": "Order Completed",
            "property": "total",
            "at_least": 500,
            "within": {"days": 30},
        },
    ),
    ConditionType(
        "distinct_count",
        'At least N distinct values of a property; "of": "customer" counts distinct '
        "customers (for account milestones).",
        {"type": "distinct_count", "event": "Teammate Invited", "of": "email", "at_least": 3},
    ),
    ConditionType(
        "attribute",
        "A trait of the subject matches now (no history: counts from the anchor).",
        {"type": "attribute", "trait": "plan", "op": "in", "value": ["pro", "team"]},
    ),
    ConditionType(
        "milestone",
        "Another milestone (same unit) has been achieved.",
        {"type": "milestone", "key": "activated"},
    ),
    ConditionType(
        "all",
        "Every listed condition holds; achieved when the last one is.",
        {"type": "all", "conditions": [_REPORTS_THIS_WEEK, _INVITED]},
    ),
    ConditionType(
        "any",
        "At least one listed condition holds; achieved when the first one is.",
        {"type": "any", "conditions": [_REPORTS_THIS_WEEK, _INVITED]},
    ),
    ConditionType(
        "sequence",
        "Steps in order, each strictly after the previous; a step's within is measured "
        "from the previous step.",
        {
            "type": "sequence",
            "steps": [
                {"event": "Cart Viewed"},
                {"event": "Checkout Started", "within": {"hours": 1}},
                {
                    "event": "Order Completed",
                    "where": [{"property": "total", "op": "gte", "value": 50}],
                    "within": {"days": 1},
                },
            ],
        },
    ),
)

FILTER_HELP: Final = {
    "eq": "equals (JSON equality: 1 equals 1.0, true is not 1)",
    "neq": "does not equal (an absent property is not equal)",
    "gt": "greater than (numbers only)",
    "gte": "at least (numbers only)",
    "lt": "less than (numbers only)",
    "lte": "at most (numbers only)",
    "in": "is one of a list of values",
    "contains": "substring of a string, or member of a list",
    "exists": 'is present (value true, the default) or absent ("value": false)',
}
CONDITION_LIMITS: Final = {"depth": MAX_DEPTH, "nodes": MAX_NODES}

_CONDITION_HELP_TEXT: Final = (
    "A JSON condition tree. Errors name the node, as a path: $ is the whole tree, .name a "
    "field, [i] the i-th item counted from 0 (e.g. $.all[1].at_least)."
)
_ELIGIBILITY_HELP_TEXT: Final = (
    'Who the milestone applies to; {} is everyone. Fields (all optional): "plans", '
    '"regions", "statuses", "stages" (lists), "billing": "trial"|"paid", '
    '"tenure": "new"|"returning", "new_days": 30.'
)


# --- Definitions --------------------------------------------------------------------------


class DefinitionForm(forms.ModelForm):  # type: ignore[type-arg]
    """A definition's working copy, validated by ``definition_validate``; never saved here."""

    condition = PrettyJSONField(rows=18, help_text=_CONDITION_HELP_TEXT)
    eligibility = PrettyJSONField(
        rows=5, required=False, initial=dict, help_text=_ELIGIBILITY_HELP_TEXT
    )
    window = WindowField(
        required=False,
        help_text='Time from the anchor to achieve it, e.g. "14 days"; empty: no deadline.',
    )

    class Meta:
        model = MilestoneDefinition
        fields = (
            "key",
            "name",
            "description",
            "kind",
            "unit",
            "parent",
            "condition",
            "anchor",
            "anchor_event",
            "anchor_milestone",
            "window",
            "eligibility",
        )

    def clean_eligibility(self) -> Any:
        value = self.cleaned_data.get("eligibility")
        return {} if value is None else value

    def _post_clean(self) -> None:
        # Copies the cleaned values onto the instance, unsaved; validation reads it there.
        super()._post_clean()  # type: ignore[misc]
        if self.instance.pk is not None and self.instance.status == DefinitionStatus.ARCHIVED:
            self.add_error(None, "An archived milestone cannot be edited.")
            return
        try:
            definition_validate(self.instance)
        except DefinitionInvalid as exc:
            self._explain(exc.errors)

    def _explain(self, errors: dict[str, str]) -> None:
        for field, message in errors.items():
            if field not in self.fields:
                self.add_error(None, f"{field}: {message}")
            elif not self.has_error(field):  # an input error (bad JSON) is the better story
                self.add_error(field, message)


# --- Lifecycle stages ---------------------------------------------------------------------


class LifecycleStageForm(forms.ModelForm):  # type: ignore[type-arg]
    rules = PrettyJSONField(
        rows=8,
        help_text=(
            'A list of {"milestone": key, "state": state}; all must hold. States: '
            f"{', '.join(sorted(RULE_STATES))}."
        ),
    )

    class Meta:
        model = LifecycleStage
        fields = ("key", "name", "priority", "rules", "is_active")

    def clean_rules(self) -> Any:
        rules = self.cleaned_data["rules"]
        try:
            parse_stage_rules(rules)
        except ConditionError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc
        return rules
