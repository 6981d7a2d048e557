"""The step editor: one form row per step, with the fields of its type, read into and written
from the step JSON that ``journeys.graph.graph_parse`` accepts.

Rows only translate: a row becomes the step object its fields describe (blank fields are
left out, so the parser's "is required" lands on the right field) and ``graph_parse`` judges
the list. Its ``GraphError`` path (``$[2].branches[0].when.op``) is mapped back to the row
and the field it is about. A row nobody touched gives back its stored step unchanged, so
saving a page without editing a step never changes the JSON (and never makes a new version).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from django import forms
from django.forms.formsets import DELETION_FIELD_NAME, ORDERING_FIELD_NAME

from journeys.graph.parse import MAX_STEPS
from journeys.graph.steps import ENGAGEMENTS, EXIT_OUTCOMES, GraphError
from milestones.conditions.tree import FILTER_OPS
from milestones.forms import PrettyJSONField

STEP_TYPES: Final = (
    ("send", "Send a message"),
    ("wait", "Wait"),
    ("branch", "Branch: choose a path"),
    ("split", "Split: A/B test"),
    ("notify", "Notify the team"),
    ("update", "Update the customer"),
    ("exit", "Exit"),
)
WAIT_KINDS: Final = (
    ("duration", "for a while"),
    ("until_local_time", "until a time of day (customer's time zone)"),
    ("event", "until an event happens, or a timeout"),
    ("milestone", "until a milestone reaches a state, or a timeout"),
)
CONDITION_KINDS: Final = (
    ("", "—"),
    ("trait", "a trait compares"),
    ("milestone", "a milestone is in a state"),
    ("stage", "the lifecycle stage is"),
    ("engagement", "the customer engaged with a send"),
    ("json", "raw JSON (all / any / not)"),
)
UNTIL_STATES: Final = ("achieved", "missed", "in_progress", "ineligible")
#: Rows shown for branch arms and split variants beyond those a step already has.
ARMS_SHOWN: Final = 2
VARIANTS_SHOWN: Final = 2
_SLOT: Final = re.compile(r"^(arm|variant)(\d+)_")
_DURATION_PART: Final = re.compile(
    r"(?P<amount>\d+)\s*(?P<unit>weeks?|w|days?|d|hours?|h|minutes?|mins?|m)(?![a-z])",
    re.IGNORECASE,
)
_UNITS: Final = {"w": "days", "d": "days", "h": "hours", "m": "minutes"}
_UNIT_WORDS: Final = (("days", "day"), ("hours", "hour"), ("minutes", "minute"))
DURATION_HELP: Final = 'e.g. "2 days", "36 hours", "1 day 6 hours" or "90 minutes".'


# --- Durations and values in words ----------------------------------------------------------


def duration_parse(text: str) -> dict[str, int]:
    """``"1 day 6 hours"`` as the graph's ``{"days": 1, "hours": 6}``, in the units written."""
    cleaned = text.strip().replace(",", " ")
    parts = list(_DURATION_PART.finditer(cleaned))
    if not parts or _DURATION_PART.sub("", cleaned).strip():
        raise forms.ValidationError(f"Write a duration, {DURATION_HELP}", code="invalid")
    amounts: dict[str, int] = {}
    for part in parts:
        letter = part["unit"][0].lower()
        amount = int(part["amount"]) * (7 if letter == "w" else 1)
        amounts[_UNITS[letter]] = amounts.get(_UNITS[letter], 0) + amount
    return amounts


def duration_words(value: object) -> str:
    """The graph's duration object as ``duration_parse`` reads it back."""
    if not isinstance(value, Mapping) or not set(value) <= {unit for unit, _ in _UNIT_WORDS}:
        return json.dumps(value)
    parts = []
    for unit, word in _UNIT_WORDS:
        if unit in value:
            amount = value[unit]
            parts.append(f"{amount} {word}{'' if amount == 1 else 's'}")
    return " ".join(parts)


def value_parse(text: str) -> Any:
    """A comparison value: JSON when it reads as JSON (``5``, ``true``, ``["a", "b"]``), else
    the text itself (``pro``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def value_words(value: Any) -> str:
    """A value as ``value_parse`` reads it back: text that would read as JSON is quoted."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value, ensure_ascii=False)


def _keys_text(keys: object) -> str:
    return ", ".join(str(k) for k in keys) if isinstance(keys, list) else ""


def _keys_parse(text: str) -> list[str]:
    return [key.strip() for key in text.split(",") if key.strip()]


# --- One row --------------------------------------------------------------------------------


def _text(label: str, help_text: str = "", **attrs: Any) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        help_text=help_text,
        widget=forms.TextInput(attrs={"size": 24, **attrs}),
    )


def _json(label: str, help_text: str) -> PrettyJSONField:
    return PrettyJSONField(label=label, required=False, help_text=help_text, rows=3)


class StepForm(forms.Form):
    """One step. Every field is optional here: ``graph_parse`` says what a type needs."""

    key = _text("Key", "A short name other steps point at, e.g. nudge (a-z, 0-9, _ and -).")
    type = forms.ChoiceField(
        label="Type", required=False, choices=[("", "—"), *STEP_TYPES], initial=""
    )
    next = _text("Then go to", "The key of the step that follows.")
    # send
    templates = _text(
        "Templates",
        "Template keys, comma separated, one per channel in the order to try: the first "
        "channel the customer can get (consent, address, caps) is used.",
        size=40,
    )
    priority = forms.IntegerField(
        label="Priority",
        required=False,
        help_text="Blank: the journey's priority. Higher wins a customer's last free slot.",
    )
    # wait
    wait_for = forms.ChoiceField(
        label="Wait", required=False, choices=[("", "—"), *WAIT_KINDS], initial=""
    )
    duration = _text("For", DURATION_HELP)
    local_time = _text("Until", '24-hour time of day, e.g. "10:00".', size=6)
    until_event = _text("Event", "The event name, e.g. Report Created.")
    until_filters = _json(
        "Event filters",
        'Optional, e.g. [{"property": "pages", "op": "gte", "value": 2}].',
    )
    until_milestone = _text("Milestone", "The milestone key, e.g. activated.")
    until_state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[("", "—"), *((s, s.replace("_", " ")) for s in UNTIL_STATES)],
    )
    timeout = _text("Give up after", DURATION_HELP)
    timeout_next = _text("Then go to (timed out)", "The step to take when the wait times out.")
    # branch
    otherwise = _text("Otherwise go to", "The step when no condition above holds.")
    # notify
    to = _text(
        "Notify",
        "account_owner, sales, support, email:someone@example.com or webhook:https://…",
        size=40,
    )
    template = _text("Template", "The template key of the notice (optional for a webhook).")
    # update
    set_traits = _json("Set traits", 'A JSON object, e.g. {"nudged": true}.')
    set_stage = _text("Set lifecycle stage", "A stage key, e.g. engaged.")
    # exit
    outcome = forms.ChoiceField(
        label="Outcome",
        required=False,
        choices=[(o, o) for o in EXIT_OUTCOMES],
        initial="completed",
        help_text="completed: the customer went the whole way; exited: they left early.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arm_count = self._slots("arm", ARMS_SHOWN)
        self.variant_count = self._slots("variant", VARIANTS_SHOWN)
        for slot in range(self.arm_count):
            self.fields.update(_arm_fields(slot))
        for slot in range(self.variant_count):
            self.fields.update(_variant_fields(slot))
        #: JSON index -> slot, for the arms and variants of the step last built.
        self.arm_slots: list[int] = []
        self.variant_slots: list[int] = []

    def _slots(self, kind: str, shown: int) -> int:
        """Slots shown: those the stored step or the posted rows use, plus ``shown``."""
        used = [
            int(found[2]) + 1
            for name in self.initial
            if (found := _SLOT.match(name)) and found[1] == kind
        ]
        if self.is_bound:
            prefix = self.add_prefix("")
            used += [
                int(found[2]) + 1
                for name in self.data
                if name.startswith(prefix)
                and (found := _SLOT.match(name.removeprefix(prefix)))
                and found[1] == kind
            ]
        return max(used, default=0) + shown

    def clean_duration(self) -> dict[str, int] | None:
        return self._duration("duration")

    def clean_timeout(self) -> dict[str, int] | None:
        return self._duration("timeout")

    def _duration(self, name: str) -> dict[str, int] | None:
        text = self.cleaned_data.get(name) or ""
        return duration_parse(text) if text.strip() else None

    # --- rendering helpers

    def arms(self) -> list[dict[str, forms.BoundField]]:
        return [
            {
                part: self[f"arm{slot}_{part}"]
                for part in ("kind", "subject", "test", "value", "next")
            }
            for slot in range(self.arm_count)
        ]

    def variants(self) -> list[dict[str, forms.BoundField]]:
        return [
            {part: self[f"variant{slot}_{part}"] for part in ("name", "weight", "next")}
            for slot in range(self.variant_count)
        ]

    @property
    def label(self) -> str:
        key = self["key"].value()
        return f"“{key}”" if key else "(new step)"

    # --- to JSON

    def step(self) -> dict[str, Any]:
        """The step object of this row (call after ``is_valid``)."""
        stored = self.initial.get("_step")
        edited = [
            n for n in self.changed_data if n not in (ORDERING_FIELD_NAME, DELETION_FIELD_NAME)
        ]
        if isinstance(stored, dict) and not edited:
            return stored
        data = self.cleaned_data
        step: dict[str, Any] = {}
        _put(step, "key", data.get("key"))
        _put(step, "type", data.get("type"))
        kind = data.get("type")
        if kind in ("send", "wait", "notify", "update"):
            _put(step, "next", data.get("next"))
        if kind == "send":
            templates = _keys_parse(data.get("templates") or "")
            _put(step, "templates", templates or None)
            _put(step, "priority", data.get("priority"))
        elif kind == "wait":
            self._wait(step, data)
        elif kind == "branch":
            step["branches"] = self._branches(data)
            _put(step, "else", data.get("otherwise"))
        elif kind == "split":
            step["variants"] = self._variants(data)
        elif kind == "notify":
            _put(step, "to", data.get("to"))
            _put(step, "template", data.get("template"))
        elif kind == "update":
            _put(step, "set_traits", data.get("set_traits"))
            _put(step, "set_stage", data.get("set_stage"))
        elif kind == "exit":
            _put(step, "outcome", data.get("outcome"))
        return step

    def _wait(self, step: dict[str, Any], data: Mapping[str, Any]) -> None:
        kind = data.get("wait_for")
        if kind == "duration":
            step["duration"] = data.get("duration")
        elif kind == "until_local_time":
            step["until_local_time"] = data.get("local_time") or None
        elif kind in ("event", "milestone"):
            until: dict[str, Any] = {}
            if kind == "event":
                _put(until, "event", data.get("until_event"))
                _put(until, "filters", data.get("until_filters"))
            else:
                _put(until, "milestone", data.get("until_milestone"))
                _put(until, "state", data.get("until_state"))
            step["until"] = until
            step["timeout"] = data.get("timeout")
            _put(step, "timeout_next", data.get("timeout_next"))

    def _branches(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        branches, self.arm_slots = [], []
        for slot in range(self.arm_count):
            parts = {p: data.get(f"arm{slot}_{p}") for p in ("kind", "subject", "test", "value")}
            after = data.get(f"arm{slot}_next")
            if not any(parts.values()) and not after:
                continue
            branch: dict[str, Any] = {}
            when = _condition(parts)
            _put(branch, "when", when)
            _put(branch, "next", after)
            branches.append(branch)
            self.arm_slots.append(slot)
        return branches

    def _variants(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        variants, self.variant_slots = [], []
        for slot in range(self.variant_count):
            fields = {p: data.get(f"variant{slot}_{p}") for p in ("name", "weight", "next")}
            if all(value in (None, "") for value in fields.values()):
                continue
            variant: dict[str, Any] = {}
            for name, value in fields.items():
                _put(variant, name, value)
            variants.append(variant)
            self.variant_slots.append(slot)
        return variants

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        for slot in range(self.arm_count):
            text = data.get(f"arm{slot}_value") or ""
            if data.get(f"arm{slot}_kind") == "json" and text.strip():
                try:
                    json.loads(text)
                except json.JSONDecodeError as exc:
                    self.add_error(
                        f"arm{slot}_value",
                        f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                    )
        return data

    # --- errors back to fields

    def place(self, rest: str, message: str) -> str | None:
        """The field a ``GraphError`` about this row is on (``rest`` is its path after
        ``$[i]``); None for the row as a whole."""
        if not rest:
            if message.startswith('must have one of "duration"'):
                return "wait_for"
            if message.startswith('must have "set_traits"'):
                return "set_traits"
            return None
        if found := re.match(r"^\.branches(?:\[(\d+)\])?(.*)$", rest):
            return self._arm_place(found[1], found[2])
        if found := re.match(r"^\.variants(?:\[(\d+)\])?(?:\.(name|weight|next))?", rest):
            slot = self._slot(self.variant_slots, found[1])
            return f"variant{slot}_{found[2] or 'name'}"
        if found := re.match(r"^\.until(?:\.(\w+))?", rest):
            part = found[1]
            if part in ("event", "filters", "milestone", "state"):
                return f"until_{part}"
            return "until_event" if self["wait_for"].value() == "event" else "until_milestone"
        name = re.match(r"^\.(\w+)", rest)
        field = name[1] if name else ""
        renames = {"else": "otherwise", "until_local_time": "local_time"}
        field = renames.get(field, field)
        return field if field in self.fields else None

    def _arm_place(self, index: str | None, rest: str) -> str:
        slot = self._slot(self.arm_slots, index)
        if index is None or not rest:
            return f"arm{slot}_kind"
        if rest.startswith(".next"):
            return f"arm{slot}_next"
        if self[f"arm{slot}_kind"].value() == "json":
            return f"arm{slot}_value"
        when = rest.removeprefix(".when")
        if when.startswith((".trait", ".milestone", ".stage", ".step", ".property")):
            return f"arm{slot}_subject"
        if when.startswith((".op", ".state", ".engagement")):
            return f"arm{slot}_test"
        if when.startswith(".value"):
            return f"arm{slot}_value"
        return f"arm{slot}_kind"

    @staticmethod
    def _slot(slots: Sequence[int], index: str | None) -> int:
        position = int(index) if index is not None else 0
        return slots[position] if position < len(slots) else position


def _put(target: dict[str, Any], name: str, value: Any) -> None:
    """Set ``name`` unless the value is blank, so a missing value reads as missing."""
    if value is not None and value != "":
        target[name] = value


def _condition(parts: Mapping[str, Any]) -> dict[str, Any] | None:
    kind, subject = parts["kind"], parts["subject"] or ""
    test, value = parts["test"] or "", parts["value"] or ""
    condition: dict[str, Any] = {}
    if kind == "trait":
        _put(condition, "trait", subject)
        _put(condition, "op", test)
        if value:
            condition["value"] = value_parse(value)
    elif kind == "milestone":
        _put(condition, "milestone", subject)
        _put(condition, "state", test)
    elif kind == "stage":
        _put(condition, "stage", subject)
    elif kind == "engagement":
        _put(condition, "engagement", test)
        _put(condition, "step", subject)
    elif kind == "json":
        return value_parse(value) if value.strip() else None
    else:
        return None
    return condition


def _arm_fields(slot: int) -> dict[str, forms.Field]:
    tests = ", ".join(FILTER_OPS)
    return {
        f"arm{slot}_kind": forms.ChoiceField(
            label=f"If ({slot + 1})", required=False, choices=CONDITION_KINDS
        ),
        f"arm{slot}_subject": _text(
            "Of",
            "The trait name, milestone key, stage key, or the key of the send step.",
            size=16,
        ),
        f"arm{slot}_test": _text(
            "Test",
            f"For a trait one of {tests}; for a milestone its state (achieved, missed, "
            f"in_progress, ineligible, not_started); for engagement one of "
            f"{', '.join(ENGAGEMENTS)}.",
            size=10,
        ),
        f"arm{slot}_value": forms.CharField(
            label="Value",
            required=False,
            help_text='For a trait: the value (text, a number, true, or ["a", "b"] for in). '
            'For raw JSON: the condition, e.g. {"any": [...]}.',
            widget=forms.Textarea(attrs={"rows": 1, "cols": 24, "spellcheck": "false"}),
        ),
        f"arm{slot}_next": _text("Go to", "", size=12),
    }


def _variant_fields(slot: int) -> dict[str, forms.Field]:
    return {
        f"variant{slot}_name": _text(f"Variant ({slot + 1})", "e.g. A", size=10),
        f"variant{slot}_weight": forms.IntegerField(
            label="Weight",
            required=False,
            help_text="Share of customers, relative to the other variants' weights.",
            widget=forms.NumberInput(attrs={"style": "width: 6em"}),
        ),
        f"variant{slot}_next": _text("Go to", "", size=12),
    }


# --- JSON to rows ---------------------------------------------------------------------------


def step_initial(step: object) -> dict[str, Any]:
    """A stored step as a row's initial values (``_step`` keeps the step itself)."""
    if not isinstance(step, Mapping):
        return {}
    initial: dict[str, Any] = {
        "_step": dict(step),
        "key": step.get("key"),
        "type": step.get("type"),
    }
    for name in ("next", "priority", "to", "template", "set_stage", "outcome"):
        if name in step:
            initial[name] = step[name]
    if "templates" in step:
        initial["templates"] = _keys_text(step["templates"])
    if "set_traits" in step:
        initial["set_traits"] = step["set_traits"]
    if "else" in step:
        initial["otherwise"] = step["else"]
    _wait_initial(step, initial)
    for slot, branch in enumerate(_list(step.get("branches"))):
        initial.update(_arm_initial(slot, branch))
    for slot, variant in enumerate(_list(step.get("variants"))):
        if isinstance(variant, Mapping):
            for part in ("name", "weight", "next"):
                initial[f"variant{slot}_{part}"] = variant.get(part)
    return initial


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _wait_initial(step: Mapping[str, Any], initial: dict[str, Any]) -> None:
    if "duration" in step:
        initial.update(wait_for="duration", duration=duration_words(step["duration"]))
    elif "until_local_time" in step:
        initial.update(wait_for="until_local_time", local_time=step["until_local_time"])
    elif isinstance(until := step.get("until"), Mapping):
        kind = "event" if "event" in until else "milestone"
        initial.update(
            wait_for=kind,
            until_event=until.get("event"),
            until_filters=until.get("filters"),
            until_milestone=until.get("milestone"),
            until_state=until.get("state"),
            timeout=duration_words(step["timeout"]) if "timeout" in step else "",
            timeout_next=step.get("timeout_next"),
        )


def _arm_initial(slot: int, branch: object) -> dict[str, Any]:
    if not isinstance(branch, Mapping):
        return {}
    when = branch.get("when")
    row = {f"arm{slot}_next": branch.get("next")}
    parts = _simple_condition(when)
    if parts is None:
        parts = {"kind": "json", "value": json.dumps(when, ensure_ascii=False)}
    row.update({f"arm{slot}_{name}": value for name, value in parts.items()})
    return row


def _simple_condition(when: object) -> dict[str, Any] | None:
    """A condition one row can show, as its fields; None for one that needs raw JSON."""
    if not isinstance(when, Mapping):
        return None
    fields = set(when)
    if "trait" in fields and fields <= {"trait", "op", "value"}:
        value = value_words(when["value"]) if "value" in when else ""
        return {"kind": "trait", "subject": when["trait"], "test": when.get("op"), "value": value}
    if fields == {"milestone", "state"}:
        return {"kind": "milestone", "subject": when["milestone"], "test": when["state"]}
    if fields == {"stage"}:
        return {"kind": "stage", "subject": when["stage"]}
    if fields == {"engagement", "step"}:
        return {"kind": "engagement", "subject": when["step"], "test": when["engagement"]}
    return None


# --- The formset ----------------------------------------------------------------------------


class BaseStepFormSet(forms.BaseFormSet):  # type: ignore[type-arg]
    def kept(self) -> list[StepForm]:
        """The rows that make the steps, in their order (call after ``is_valid``)."""
        return [form for form in self.ordered_forms if isinstance(form, StepForm)]

    def graph_error(self, error: GraphError, rows: Sequence[StepForm]) -> str:
        """Put a ``GraphError`` on the row and field it is about; returns it in words, naming
        the row and the field."""
        found = re.match(r"^\$\[(\d+)\](.*)$", error.path)
        if found is None or int(found[1]) >= len(rows):
            self._non_form_errors = self.error_class([f"Steps: {error.message}"])
            return f"Steps: {error.message}"
        index, rest = int(found[1]), found[2]
        form = rows[index]
        field = form.place(rest, error.message)
        form.add_error(field, error.message)
        # Named as the page shows it: rows keep their place until saved in "Order" order.
        where = f"Step {self.forms.index(form) + 1} ({form.label})"
        if field is None:
            return f"{where}: {error.message}"
        return f"{where}, {form.fields[field].label}: {error.message}"


StepFormSet = forms.formset_factory(
    StepForm,
    formset=BaseStepFormSet,
    extra=1,
    can_order=True,
    can_delete=True,
    max_num=MAX_STEPS,
    validate_max=True,
)


def steps_formset(
    steps: object, data: Mapping[str, Any] | None = None, prefix: str = "steps"
) -> BaseStepFormSet:
    initial = [step_initial(step) for step in steps] if isinstance(steps, list) else []
    return cast(BaseStepFormSet, StepFormSet(data=data, prefix=prefix, initial=initial))
