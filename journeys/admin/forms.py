"""The journey form: trigger, entry rules, goal and exit criteria as plain fields, the steps as
ordered rows (``journeys.admin.steps``) or as raw JSON.

The form validates with the same pure checks ``journeys.services.journey_save`` runs
(``graph_parse``, ``rules_check``, ``reentry_check``, ``holdout_check``) and puts each error
on the field, or the step row and field, it is about; saving is the admin's call to
``journey_save``. A group of fields nobody touched keeps its stored JSON as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from django import forms

from journeys.admin.steps import BaseStepFormSet, StepForm, duration_parse, steps_formset
from journeys.graph import GraphError, graph_parse
from journeys.models import Journey
from journeys.rules import RuleError, holdout_check, reentry_check, rules_check
from milestones.forms import PrettyJSONField

TRIGGER_KINDS: Final = (
    ("milestone_missed", "A milestone is missed"),
    ("milestone_achieved", "A milestone is achieved"),
    ("event", "An event happens"),
    ("stage_changed", "The customer's lifecycle stage changes"),
)
ROWS: Final = "rows"
JSON: Final = "json"
_GROUPS: Final = {
    "trigger": ("trigger_kind", "trigger_milestone", "trigger_event", "trigger_filters",
                "trigger_stage"),
    "entry_rules": ("entry_plans", "entry_regions", "entry_stages"),
    "goal": ("goal_milestone", "goal_within"),
    "exit_when": ("exit_milestones", "exit_events"),
}  # fmt: skip
#: Where a ``RuleError`` path lands (the longest matching prefix wins).
_RULE_FIELDS: Final = {
    "trigger": "trigger_kind",
    "trigger.kind": "trigger_kind",
    "trigger.milestone": "trigger_milestone",
    "trigger.event": "trigger_event",
    "trigger.filters": "trigger_filters",
    "trigger.to": "trigger_stage",
    "entry_rules": "entry_plans",
    "entry_rules.plans": "entry_plans",
    "entry_rules.regions": "entry_regions",
    "entry_rules.stages": "entry_stages",
    "goal": "goal_milestone",
    "goal.milestone": "goal_milestone",
    "goal.within": "goal_within",
}


def _list_text(values: object) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else ""


def _list_parse(text: str) -> list[str]:
    return [value.strip() for value in text.split(",") if value.strip()]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _words(value: object) -> str:
    """A goal window (``{"days": 14}``) in words."""
    if not isinstance(value, Mapping):
        return ""
    parts = []
    for unit, word in (("days", "day"), ("hours", "hour")):
        if unit in value:
            amount = value[unit]
            parts.append(f"{amount} {word}{'' if amount == 1 else 's'}")
    return " ".join(parts)


class JourneyForm(forms.ModelForm):  # type: ignore[type-arg]
    trigger_kind = forms.ChoiceField(
        label="Enter when", choices=TRIGGER_KINDS, help_text="What puts a customer in."
    )
    trigger_milestone = forms.CharField(
        label="Milestone",
        required=False,
        help_text="For a milestone trigger: its key, e.g. activated.",
    )
    trigger_event = forms.CharField(
        label="Event",
        required=False,
        help_text="For an event trigger: the event name, e.g. Report Created.",
    )
    trigger_filters = PrettyJSONField(
        label="Event filters",
        required=False,
        rows=3,
        help_text="Optional, for an event trigger: only events whose properties match, e.g. "
        '[{"property": "plan", "op": "eq", "value": "pro"}].',
    )
    trigger_stage = forms.CharField(
        label="Stage",
        required=False,
        help_text="For a stage trigger: the stage the customer moves to, e.g. at_risk.",
    )
    entry_plans = forms.CharField(
        label="Only plans",
        required=False,
        help_text="Comma separated, e.g. pro, team. Blank: every plan.",
    )
    entry_regions = forms.CharField(
        label="Only regions",
        required=False,
        help_text="Comma separated, e.g. US, CA. Blank: every region.",
    )
    entry_stages = forms.CharField(
        label="Only stages",
        required=False,
        help_text="Comma separated lifecycle stages, e.g. onboarding. Blank: every stage.",
    )
    goal_milestone = forms.CharField(
        label="Goal milestone",
        required=False,
        help_text="A customer converts when they achieve it (blank: no goal). Held-out "
        "customers convert too, which is how the lift is measured.",
    )
    goal_within = forms.CharField(
        label="Within",
        required=False,
        help_text='How long after entering it still counts, e.g. "14 days" or "36 hours".',
    )
    exit_milestones = forms.CharField(
        label="Leave when a milestone",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text='One per line: the milestone key and its state, e.g. "activated achieved" '
        "(achieved if left out; or missed, in_progress, ineligible). The customer leaves at "
        "once, wherever they are.",
    )
    exit_events = forms.CharField(
        label="Leave on the event",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text="One event name per line, e.g. Unsubscribed.",
    )
    steps_mode = forms.ChoiceField(
        label="Edit the steps as",
        choices=((ROWS, "rows (one per step)"), (JSON, "raw JSON")),
        initial=ROWS,
        widget=forms.RadioSelect,
        help_text="The rows and the JSON show the same steps; the one chosen here is saved.",
    )
    steps_json = PrettyJSONField(
        label="Steps as JSON",
        required=False,
        rows=16,
        help_text="The step list the rows make. The first step is where customers start.",
    )

    class Meta:
        model = Journey
        fields = ("key", "name", "description", "reentry", "reentry_days", "priority",
                  "holdout_percent")  # fmt: skip
        help_texts = {
            "key": "How the API and the message log name this journey, e.g. setup-nudge. "
            "Fixed once made.",
            "name": "What marketers call it.",
            "reentry": "Whether a customer who was in this journey may enter it again.",
            "reentry_days": "With “again after N days”: N, counted from their last entry.",
            "priority": "Higher wins when this journey's message and another compete for a "
            "customer's last free slot under a frequency cap.",
            "holdout_percent": "Share of entering customers (0 to 50) held out as a control "
            "group: they get nothing, and their conversions measure the journey's lift.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        journey = self.instance
        stored = journey.pk is not None
        if stored:
            self.initial.update(self._initial(journey))
        self.initial.setdefault("steps_json", journey.steps if stored else None)
        self.steps_formset: BaseStepFormSet = steps_formset(
            journey.steps if stored else [], self.data if self.is_bound else None
        )
        #: The definition the form describes, set by ``clean``: what ``journey_save`` takes.
        self.definition: dict[str, Any] = {}

    @staticmethod
    def _initial(journey: Journey) -> dict[str, Any]:
        trigger = journey.trigger if isinstance(journey.trigger, dict) else {}
        entry = journey.entry_rules if isinstance(journey.entry_rules, dict) else {}
        goal = journey.goal if isinstance(journey.goal, dict) else {}
        rules = journey.exit_when if isinstance(journey.exit_when, list) else []
        milestones = [r for r in rules if isinstance(r, dict) and "milestone" in r]
        events = [r for r in rules if isinstance(r, dict) and "milestone" not in r]
        return {
            "trigger_kind": trigger.get("kind"),
            "trigger_milestone": trigger.get("milestone", ""),
            "trigger_event": trigger.get("event", ""),
            "trigger_filters": trigger.get("filters"),
            "trigger_stage": trigger.get("to", ""),
            "entry_plans": _list_text(entry.get("plans")),
            "entry_regions": _list_text(entry.get("regions")),
            "entry_stages": _list_text(entry.get("stages")),
            "goal_milestone": goal.get("milestone", ""),
            "goal_within": _words(goal.get("within")),
            "exit_milestones": "\n".join(
                f"{r['milestone']} {r.get('state', 'achieved')}" for r in milestones
            ),
            "exit_events": "\n".join(str(r.get("event", "")) for r in events),
        }

    # --- building the definition

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        built = {
            "trigger": self._trigger(data),
            "entry_rules": self._entry_rules(data),
            "goal": self._goal(data),
            "exit_when": self._exit_when(data),
        }
        journey = self.instance
        for group, names in _GROUPS.items():
            if journey.pk is not None and not set(names) & set(self.changed_data):
                built[group] = getattr(journey, group)  # untouched: stored JSON kept as is
        steps = self._steps(data)
        if steps is not None:
            built["steps"] = steps
            self._check_steps(steps, data)
        rule_fields = {name for names in _GROUPS.values() for name in names}
        if not rule_fields & set(self.errors):
            self._check_rules(built)
        self._check_numbers(data)
        self.definition = built
        return data

    def _trigger(self, data: Mapping[str, Any]) -> dict[str, Any]:
        kind = data.get("trigger_kind") or ""
        trigger: dict[str, Any] = {"kind": kind}
        if kind.startswith("milestone_"):
            trigger["milestone"] = data.get("trigger_milestone", "")
        elif kind == "event":
            trigger["event"] = data.get("trigger_event", "")
            if data.get("trigger_filters") is not None:
                trigger["filters"] = data["trigger_filters"]
        elif kind == "stage_changed":
            trigger["to"] = data.get("trigger_stage", "")
        return trigger

    def _entry_rules(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        rules = {}
        for name in ("plans", "regions", "stages"):
            values = _list_parse(data.get(f"entry_{name}") or "")
            if values:
                rules[name] = values
        return rules

    def _goal(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        milestone = (data.get("goal_milestone") or "").strip()
        within_text = (data.get("goal_within") or "").strip()
        if not milestone and not within_text:
            return None
        goal: dict[str, Any] = {"milestone": milestone}
        if not within_text:
            self.add_error("goal_within", 'Say how long the goal counts, e.g. "14 days".')
            return goal
        try:
            within = duration_parse(within_text)
        except forms.ValidationError as exc:
            self.add_error("goal_within", exc)
            return goal
        if "minutes" in within:
            self.add_error("goal_within", 'Use days or hours, e.g. "14 days" or "36 hours".')
        goal["within"] = within
        return goal

    def _exit_when(self, data: Mapping[str, Any]) -> list[dict[str, str]]:
        rules: list[dict[str, str]] = []
        for line in _lines(data.get("exit_milestones") or ""):
            key, _, state = line.partition(" ")
            rules.append({"milestone": key, "state": state.strip() or "achieved"})
        rules += [{"event": name} for name in _lines(data.get("exit_events") or "")]
        return rules

    def _steps(self, data: Mapping[str, Any]) -> Any:
        """The steps from the chosen editor, or None (with the error on the form)."""
        formset = self.steps_formset
        if not formset.management_form.is_valid():
            self.add_error(None, "The step rows were not sent whole; reload the page.")
            return None
        rows_changed = formset.has_changed()
        json_changed = "steps_json" in self.changed_data
        if data.get("steps_mode") == JSON:
            if rows_changed:
                self.add_error(
                    "steps_mode",
                    "The rows were edited too: choose “rows” to save them, or undo those edits.",
                )
                return None
            if data.get("steps_json") is None and "steps_json" not in self.errors:
                self.add_error("steps_json", "Write the steps, or choose “rows”.")
            return data.get("steps_json")
        if json_changed:
            self.add_error(
                "steps_mode",
                "The JSON was edited: choose “raw JSON” to save it, or undo that edit.",
            )
            return None
        if not formset.is_valid():
            self.add_error(None, "Fix the step rows marked below.")
            return None
        return [form.step() for form in formset.kept()]

    # --- the services' checks, with each error on its field

    def _check_steps(self, steps: Any, data: Mapping[str, Any]) -> None:
        try:
            graph_parse(steps)
        except GraphError as exc:
            self._graph_error(exc, data)

    def _check_rules(self, built: Mapping[str, Any]) -> None:
        try:
            rules_check(
                trigger=built["trigger"],
                entry_rules=built["entry_rules"],
                goal=built["goal"],
                exit_when=built["exit_when"],
            )
        except RuleError as exc:
            self._rule_error(exc, built)

    def _check_numbers(self, data: Mapping[str, Any]) -> None:
        if "reentry_days" not in self.errors:
            try:
                reentry_check(str(data.get("reentry") or "never"), data.get("reentry_days"))
            except RuleError as exc:
                self.add_error("reentry_days", exc.message)
        if "holdout_percent" not in self.errors:
            try:
                holdout_check(data.get("holdout_percent") or 0)
            except RuleError as exc:
                self.add_error("holdout_percent", exc.message)

    def _graph_error(self, exc: GraphError, data: Mapping[str, Any]) -> None:
        if data.get("steps_mode") == JSON:
            self.add_error("steps_json", f"{exc.path}: {exc.message}")
            return
        rows: list[StepForm] = self.steps_formset.kept()
        self.add_error(None, self.steps_formset.graph_error(exc, rows))

    def _rule_error(self, exc: RuleError, built: Mapping[str, Any]) -> None:
        found = re.match(r"^exit_when\[(\d+)\](.*)$", exc.path)
        if found:
            index = int(found[1])
            rule = built["exit_when"][index] if index < len(built["exit_when"]) else {}
            milestones = [r for r in built["exit_when"] if "milestone" in r]
            field = "exit_milestones" if "milestone" in rule else "exit_events"
            line = index + 1 if field == "exit_milestones" else index - len(milestones) + 1
            self.add_error(field, f"Line {line}: {exc.message}")
            return
        prefix = max((p for p in _RULE_FIELDS if exc.path.startswith(p)), key=len, default="")
        if not prefix:
            self.add_error(None, str(exc))
            return
        rest = exc.path.removeprefix(prefix)
        self.add_error(_RULE_FIELDS[prefix], f"{rest.lstrip('.')}: {exc.message}" if rest else
                       exc.message)  # fmt: skip
