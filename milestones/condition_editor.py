"""The condition builder of the milestone definition admin: the condition as rows of typed
fields (one per leaf condition or sequence step, with property filters as sub-rows), or as
raw JSON, whichever the page's mode switch chooses.

The rows only translate, through the pure ``milestones.condition_rows``: the form reads them
into ``ConditionRows``, ``rows_check`` writes and validates the condition JSON, and each
refusal lands on its row and field. A stored condition the rows cannot show opens in JSON
mode with a note saying why. Saving is unchanged: ``DefinitionForm`` validates with
``definition_validate`` and the admin calls ``definition_create`` / ``definition_update``
with the cleaned condition, whichever editor made it.

A post without the mode switch (a script, or a page from before the builder) is read as
JSON, as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from django import forms

from milestones.condition_rows import (
    FILTER_PARTS,
    LEAF_TYPES,
    MATCH_FIELD,
    MATCHES,
    ROW_FIELDS,
    STEP,
    ConditionRow,
    ConditionRows,
    FilterRow,
    Match,
    RowProblem,
    RowsInvalid,
    Unrepresentable,
    condition_rows,
    filter_field,
    row_fields,
    rows_check,
    rows_naming,
    sentence,
)
from milestones.conditions.tree import FILTER_OPS, MAX_FILTERS, FilterOp
from milestones.forms import DefinitionForm, PrettyJSONField

BUILDER: Final = "builder"
JSON: Final = "json"
#: Empty filter sub-rows shown under a row's filters ("Add a filter" makes more).
FILTERS_SHOWN: Final = 1
ROWS_PREFIX: Final = "condition_rows"

#: The leaf types in words: (type, choice label, what it means).
ROW_TYPES: Final = (
    (
        "event_count",
        "Event count",
        "The event happens at least N times; with “within”, N times inside one rolling window.",
    ),
    (
        "distinct_days",
        "Distinct days",
        "The event happens on at least N different calendar days, counted in the customer's "
        "own time zone: several events on the same day count as one day.",
    ),
    (
        "streak",
        "Streak",
        "The event happens N days in a row, or N weeks in a row (weeks run Monday to "
        "Sunday); a day or week without it breaks the streak.",
    ),
    (
        "property_sum",
        "Property sum",
        "A number on the events adds up to at least a total, e.g. order totals reaching 500; "
        "negative amounts (refunds) lower the sum.",
    ),
    (
        "distinct_count",
        "Distinct count",
        "At least N different values of an event property (e.g. 3 different invited "
        "emails), or, for account milestones, N different customers doing the event.",
    ),
    (
        "attribute",
        "Customer trait",
        "A trait of the customer (or account) matches now, e.g. plan is pro. Traits have no "
        "history: a match counts from the moment the clock started.",
    ),
    (
        "milestone",
        "Another milestone",
        "Another milestone, measured on the same customer (or account), has been achieved.",
    ),
)
MATCH_LABELS: Final[dict[Match, str]] = {
    "single": "this one condition holds",
    "all": "all of the conditions below hold",
    "any": "any one of the conditions below holds",
    "sequence": "these steps happen in this order",
}
OP_LABELS: Final[dict[FilterOp, str]] = {
    "eq": "equals",
    "neq": "does not equal",
    "gt": "is more than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "in": "is one of",
    "contains": "contains",
    "exists": "is present",
}
VALUE_HELP: Final = (
    "Text as is (pro); numbers and true / false are read as such, so put text that looks "
    'like one in quotes ("42"). For “is one of”, separate the values with commas: pro, team. '
    "For “is present”, leave it blank (or write false for “is absent”)."
)
_OP_CHOICES: Final = [("", "—"), *((op, OP_LABELS[op]) for op in FILTER_OPS)]
_SLOT: Final = re.compile(r"^filter(\d+)_")
_QUOTED_KEY: Final = re.compile(r"'([^']*)'")


def _text(label: str, help_text: str = "", *, size: int = 24, **attrs: Any) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        help_text=help_text,
        widget=forms.TextInput(attrs={"size": size, **attrs}),
    )


def _number(label: str, help_text: str) -> forms.CharField:
    # Text, not a number input: the value is kept exactly as written (3 stays 3, 2.5 is 2.5).
    return _text(label, help_text, size=6, inputmode="decimal")


def _choice(label: str, choices: Sequence[tuple[str, str]], help_text: str = "") -> forms.Field:
    return forms.ChoiceField(label=label, required=False, choices=choices, help_text=help_text)


# --- One row --------------------------------------------------------------------------------


class ConditionRowForm(forms.Form):
    """One leaf condition, or one step of a sequence. Every field is optional here:
    ``parse_condition`` says what a type needs, through ``rows_check``."""

    type = _choice(
        "Measure",
        [("", "—"), *((kind, label) for kind, label, _ in ROW_TYPES)],
        "What this condition measures; the list above the rows explains each kind.",
    )
    event = _text(
        "Event",
        "The event name exactly as your product sends it, e.g. Report Created (capitals and "
        "spaces count).",
    )
    at_least = _number(
        "At least",
        "How many: at least this many events (event count) or different values (distinct "
        "count), e.g. 3.",
    )
    days = _number(
        "On at least (days)",
        "How many different days, e.g. 5. Days are calendar days in the customer's time "
        "zone; more events on one day do not add up.",
    )
    periods = _number("In a row", "How many days or weeks in a row, e.g. 4.")
    unit = _choice(
        "Of",
        (("", "—"), ("day", "days"), ("week", "weeks (Monday to Sunday)")),
        "Days are calendar days in the customer's time zone; weeks start on Monday.",
    )
    property = _text(
        "Property",
        "The event property holding the number to add up, e.g. total; a dot reaches into "
        "nested properties, e.g. order.total.",
    )
    total = _number(
        "Sum at least",
        "The total to reach, e.g. 500 (decimals are fine). Events without the number are skipped.",
    )
    of = _text(
        "Count different",
        "The event property whose different values are counted, e.g. email; or the word "
        "customer to count different customers (for account milestones).",
    )
    within = _text(
        "Within",
        "Optional. Everything counted must fall inside one rolling window this long, e.g. "
        '"7 days", "36 hours", "2 weeks" or "1 day 6 hours"; blank: any time since the clock '
        "started. For a step: how soon after the previous step (blank on the first step).",
        size=14,
    )
    trait = _text(
        "Trait",
        "The customer's (or account's) trait, e.g. plan; a dot reaches into nested traits.",
    )
    op = _choice("Test", _OP_CHOICES, "How the trait is compared with the value.")
    value = _text("Value", VALUE_HELP)
    key = _text(
        "Milestone key",
        "The key of the other milestone, e.g. activated. It must be measured on the same "
        "unit (customer or account) as this one.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filter_count = self._slots()
        for slot in range(self.filter_count):
            self.fields.update(_filter_fields(slot))

    def _slots(self) -> int:
        """Sub-rows shown: those the stored row or the posted page uses, plus
        ``FILTERS_SHOWN``; never more than the parser allows, plus that."""
        used = [int(found[1]) + 1 for name in self.initial if (found := _SLOT.match(name))]
        if self.is_bound:
            prefix = self.add_prefix("")
            used += [
                int(found[1]) + 1
                for name in self.data
                if name.startswith(prefix) and (found := _SLOT.match(name.removeprefix(prefix)))
            ]
        return min(max(used, default=0), MAX_FILTERS) + FILTERS_SHOWN

    # --- rendering helpers

    def filters(self) -> list[dict[str, forms.BoundField]]:
        return [
            {part: self[filter_field(slot, part)] for part in FILTER_PARTS}
            for slot in range(self.filter_count)
        ]

    def typed_fields(self) -> list[tuple[forms.BoundField, str]]:
        """Each typed field with the types that use it (``data-for`` of the template)."""
        return [(self[name], _KINDS_OF[name]) for name in _SHOWN]

    def filter_kinds(self) -> str:
        return _KINDS_OF["filters"]

    def kind_label(self) -> str:
        kind = self["type"].value()
        return next((label for name, label, _ in ROW_TYPES if name == kind), "")

    # --- to rows

    def row(self) -> ConditionRow:
        """This row for ``condition_rows`` (call after ``is_valid``)."""
        data = self.cleaned_data
        filters = tuple(
            FilterRow(*(data.get(filter_field(slot, part)) or "" for part in FILTER_PARTS))
            for slot in range(self.filter_count)
        )
        return ConditionRow(**{name: data.get(name) or "" for name in ROW_FIELDS}, filters=filters)

    def is_blank(self, match: str) -> bool:
        """Nothing written (a type alone counts, except in a sequence, whose rows have none)."""
        row = self.row()
        texts = [getattr(row, name) for name in ROW_FIELDS if name not in ("type", "unit", "op")]
        if match != "sequence":
            texts.append(row.type)
        return not any(text.strip() for text in texts) and all(t.is_blank() for t in row.filters)


#: The typed fields in the order a row shows them, and the types (or "step") using each.
_SHOWN: Final = ("event", "at_least", "days", "periods", "unit", "property", "total", "of",
                 "within", "trait", "op", "value", "key")  # fmt: skip
_KINDS_OF: Final = {
    name: " ".join(kind for kind in (*LEAF_TYPES, STEP) if name in row_fields(kind))
    for name in (*_SHOWN, "filters")
}


def _filter_fields(slot: int) -> dict[str, forms.Field]:
    number = slot + 1
    return {
        # Their help is the table's: a help text per sub-row would repeat it.
        filter_field(slot, "property"): _text(
            f"Filter {number} property", size=14, placeholder="e.g. plan"
        ),
        filter_field(slot, "op"): _choice(f"Filter {number} test", _OP_CHOICES),
        filter_field(slot, "value"): _text(f"Filter {number} value", size=14),
    }


def row_initial(row: ConditionRow) -> dict[str, Any]:
    """A row's fields as a form's initial values."""
    initial: dict[str, Any] = {name: getattr(row, name) for name in ROW_FIELDS}
    for slot, test in enumerate(row.filters):
        for part in FILTER_PARTS:
            initial[filter_field(slot, part)] = getattr(test, part)
    return initial


# --- The formset ----------------------------------------------------------------------------


class BaseConditionRowFormSet(forms.BaseFormSet):  # type: ignore[type-arg]
    def kept(self, match: str) -> list[ConditionRowForm]:
        """The rows that make the condition, in their order (call after ``is_valid``):
        deleted and blank rows are left out."""
        return [
            form
            for form in self.ordered_forms
            if isinstance(form, ConditionRowForm) and not form.is_blank(match)
        ]


ConditionRowFormSet = forms.formset_factory(
    ConditionRowForm,
    formset=BaseConditionRowFormSet,
    extra=1,
    can_order=True,
    can_delete=True,
)


def condition_formset(
    rows: ConditionRows | None, data: Mapping[str, Any] | None = None
) -> BaseConditionRowFormSet:
    initial = [row_initial(row) for row in rows.rows] if rows is not None else []
    return cast(
        BaseConditionRowFormSet,
        ConditionRowFormSet(data=data, prefix=ROWS_PREFIX, initial=initial),
    )


# --- The definition form --------------------------------------------------------------------


class ConditionEditorForm(DefinitionForm):
    """``DefinitionForm`` with the condition builder beside its JSON editor."""

    condition_mode = forms.ChoiceField(
        label="Edit the condition as",
        choices=((BUILDER, "builder (one row per condition)"), (JSON, "raw JSON")),
        required=False,
        widget=forms.RadioSelect,
        help_text="The condition is saved from the one chosen here. Both open on the stored "
        "condition (unless the builder cannot show it); edits in the other one are refused "
        "rather than lost.",
    )
    condition_match = forms.ChoiceField(
        label="Reached when",
        choices=[(match, MATCH_LABELS[match]) for match in MATCHES],
        required=False,
        help_text="One condition; several, of which all (or any one) must hold; or steps "
        "that must happen one after the other, each strictly after the previous.",
    )
    condition = PrettyJSONField(
        label="Condition as JSON",
        rows=18,
        required=False,
        help_text="The condition tree the builder makes. Errors name the node, as a path: $ "
        "is the whole tree, .name a field, [i] the i-th item counted from 0 (e.g. "
        "$.all[1].at_least).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance.condition if self.instance.pk is not None else None
        rows: ConditionRows | None = None
        #: Why the stored condition opens in JSON mode ("" when the builder shows it).
        self.condition_note = ""
        if stored is not None:
            try:
                rows = condition_rows(stored)
            except Unrepresentable as exc:
                self.condition_note = exc.reason
        self.initial.setdefault("condition_mode", JSON if self.condition_note else BUILDER)
        self.initial.setdefault("condition_match", rows.match if rows is not None else "single")
        self.condition_formset = condition_formset(rows, self.data if self.is_bound else None)
        #: The editor the condition is taken from (set by ``clean``).
        self.mode = BUILDER
        #: The rows that made the cleaned condition, and their forms (builder mode only).
        self.built: tuple[ConditionRows, list[ConditionRowForm]] | None = None

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        # Kept aside: an error on the switch takes it out of ``cleaned_data``.
        self.mode = str(data.get("condition_mode") or JSON)
        if self.mode == JSON:
            self._from_json(data)
        else:
            data["condition"] = self._from_rows(data)
        return data

    def _from_json(self, data: Mapping[str, Any]) -> None:
        if self._rows_sent() and self._rows_changed():
            self.add_error(
                "condition_mode",
                "The rows were edited too: choose “builder” to save them, or undo those edits.",
            )
        if data.get("condition") is None and not self.has_error("condition"):
            self.add_error("condition", "This field is required.")

    def _rows_sent(self) -> bool:
        return ROWS_PREFIX + "-TOTAL_FORMS" in self.data

    def _rows_changed(self) -> bool:
        formset = self.condition_formset
        return (
            not formset.management_form.is_valid()
            or formset.has_changed()
            or "condition_match" in self.changed_data
        )

    def _from_rows(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """The condition the rows make, or None with the errors on the rows."""
        if "condition" in self.changed_data:
            self.add_error(
                "condition_mode",
                "The JSON was edited: choose “raw JSON” to save it, or undo that edit.",
            )
            return None
        formset = self.condition_formset
        if not formset.management_form.is_valid():
            self.add_error(None, "The condition rows were not sent whole; reload the page.")
            return None
        if not formset.is_valid():
            self.add_error(None, "Fix the condition rows marked below.")
            return None
        match = cast(Match, data.get("condition_match") or "single")
        kept = formset.kept(match)
        rows = ConditionRows(match, tuple(form.row() for form in kept))
        try:
            condition = rows_check(rows)
        except RowsInvalid as exc:
            for problem in exc.problems:
                self._place(problem, match, kept)
            return None
        self.built = (rows, kept)
        return condition

    # --- errors back to rows

    def _place(self, problem: RowProblem, match: str, kept: Sequence[ConditionRowForm]) -> None:
        if problem.row is None:
            self.add_error("condition_match" if problem.field == MATCH_FIELD else None,
                           problem.message)  # fmt: skip
            return
        form = kept[problem.row]
        field = problem.field if problem.field in form.fields else None
        form.add_error(field, problem.message)
        self.add_error(None, self._where(form, match, field, problem.message))

    def _where(self, form: ConditionRowForm, match: str, field: str | None, message: str) -> str:
        """``Condition 2 (Event count), At least: …``, numbered as the page shows the rows."""
        number = self.condition_formset.forms.index(form) + 1
        if match == "sequence":
            where = f"Step {number}"
        else:
            label = form.kind_label()
            where = f"Condition {number}" + (f" ({label})" if label else "")
        if field is None:
            return f"{where}: {message}"
        return f"{where}, {form.fields[field].label}: {message}"

    def _explain(self, errors: dict[str, str]) -> None:
        # In builder mode a condition problem is about the rows: the parser's problems are
        # already on them; a dependency problem (no path) goes to the milestone row it names.
        errors = dict(errors)
        message = errors.pop("condition", None)
        if message is not None and self.mode == JSON:
            errors = {"condition": message, **errors}
        elif message is not None and self.built is not None:
            self._dependency(message, *self.built)
        super()._explain(errors)

    def _dependency(
        self, message: str, rows: ConditionRows, kept: Sequence[ConditionRowForm]
    ) -> None:
        named = _QUOTED_KEY.search(message)
        indexes = rows_naming(rows, named[1]) if named is not None else []
        for index in indexes:
            self._place(RowProblem(index, "key", sentence(message)), rows.match, kept)
        if not indexes:
            self.add_error(None, f"Condition: {message}")
