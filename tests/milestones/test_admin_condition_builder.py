"""The condition builder on the milestone definition admin: rows in, the exact condition JSON
saved through the services; errors on their row and field; raw JSON mode; stored conditions
shown as rows, or as JSON with the reason when the rows cannot show them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django import forms
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from milestones.condition_editor import ROW_TYPES
from milestones.condition_rows import LEAF_TYPES, same_json
from milestones.models import (
    ChangeAction,
    DefinitionChange,
    DefinitionStatus,
    MilestoneDefinition,
    MilestoneVersion,
)

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
PLAN_PRO = {"property": "plan", "op": "eq", "value": "pro"}
COUNT = {"type": "event_count", "event": "Report Created", "at_least": 3}
MILESTONE = {"type": "milestone", "key": "onboarded"}
#: One condition of every kind, each written in the builder's words.
EVERY_KIND: list[tuple[dict[str, Any], dict[str, str]]] = [
    (
        {
            "type": "event_count",
            "event": "Report Created",
            "at_least": 3,
            "within": {"days": 7},
            "where": [PLAN_PRO, {"property": "pages", "op": "gte", "value": 2}],
        },
        {"type": "event_count", "event": "Report Created", "at_least": "3",
         "within": "7 days", "filter0_property": "plan", "filter0_op": "eq",
         "filter0_value": "pro", "filter1_property": "pages", "filter1_op": "gte",
         "filter1_value": "2"},
    ),
    (
        {"type": "distinct_days", "event": "App Opened", "days": 5, "within": {"weeks": 2}},
        {"type": "distinct_days", "event": "App Opened", "days": "5", "within": "2 weeks"},
    ),
    (
        {"type": "streak", "event": "Check-in Completed", "periods": 4, "unit": "week"},
        {"type": "streak", "event": "Check-in Completed", "periods": "4", "unit": "week"},
    ),
    (
        {"type": "property_sum", "event": "Order Completed", "property": "order.total",
         "at_least": 499.5, "within": {"days": 30}},
        {"type": "property_sum", "event": "Order Completed", "property": "order.total",
         "total": "499.5", "within": "30 days"},
    ),
    (
        {"type": "distinct_count", "event": "Teammate Invited", "of": "email", "at_least": 3},
        {"type": "distinct_count", "event": "Teammate Invited", "of": "email", "at_least": "3"},
    ),
    (
        {"type": "attribute", "trait": "plan", "op": "in", "value": ["pro", "team"]},
        {"type": "attribute", "trait": "plan", "op": "in", "value": "pro, team"},
    ),
    (MILESTONE, {"type": "milestone", "key": "onboarded"}),
]  # fmt: skip


@pytest.fixture
def onboarded(milestone: Make) -> MilestoneDefinition:
    """The milestone other conditions wait for."""
    return milestone("onboarded", activate=False)


def _url(name: str, *args: Any) -> str:
    return reverse(f"admin:milestones_{name}", args=args)


def _html(response: Any) -> str:
    """The page with the whitespace between tags removed."""
    return re.sub(r">\s+<", "><", response.content.decode())


def _form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": "activated",
        "name": "Activated",
        "description": "",
        "kind": "onboarding",
        "unit": "customer",
        "parent": "",
        "anchor": "signup",
        "anchor_event": "",
        "anchor_milestone": "",
        "window": "",
        "eligibility": "{}",
        "condition_mode": "builder",
        "condition_match": "single",
        "condition": "",
        "condition_rows-TOTAL_FORMS": "0",
        "condition_rows-INITIAL_FORMS": "0",
        "condition_rows-MIN_NUM_FORMS": "0",
        "condition_rows-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def _rows(data: dict[str, Any], *rows: dict[str, str]) -> dict[str, Any]:
    for index, row in enumerate(rows):
        data.update({f"condition_rows-{index}-{name}": value for name, value in row.items()})
    data["condition_rows-TOTAL_FORMS"] = str(len(rows))
    return data


def _put(data: dict[str, Any], bound: forms.BoundField) -> None:
    value = bound.value()
    if isinstance(bound.field, forms.BooleanField):
        if value:
            data[bound.html_name] = "on"
        return
    data[bound.html_name] = "" if value is None else str(value)  # value() is as rendered


def _posted_back(response: Any) -> dict[str, Any]:
    """What a browser posts for the page when nobody edits anything."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for bound in form:
        _put(data, bound)
    for bound in form.condition_formset.management_form:
        _put(data, bound)
    for row in form.condition_formset.forms:
        for bound in row:
            _put(data, bound)
    return data


def _row_chunks(html: str) -> list[str]:
    """The page's condition rows, each as its HTML (the empty row template left out)."""
    rows = html.split('id="milestone-condition-rows"', 1)[1].split("<template", 1)[0]
    return rows.split('<div class="condition-row')[1:]


def _counts() -> tuple[int, int, int]:
    return (
        MilestoneDefinition.objects.count(),
        MilestoneVersion.objects.count(),
        DefinitionChange.objects.count(),
    )


# --- The add page ---------------------------------------------------------------------------


def test_the_add_page_shows_the_builder_with_one_empty_row(admin_client: Client) -> None:
    response = admin_client.get(_url("milestonedefinition_add"))

    html = _html(response)
    form = response.context["adminform"].form
    formset = response.context["condition_formset"]
    assert response.status_code == 200
    assert (formset.total_form_count(), formset.initial_form_count()) == (1, 0)
    assert (form["condition_mode"].value(), form["condition_match"].value()) == (
        "builder",
        "single",
    )
    assert response.context["condition_note"] == ""
    assert 'id="milestone-condition-rows"' in html
    assert '<template id="milestone-condition-empty">' in html
    assert 'name="condition_rows-__prefix__-type"' in html
    assert 'name="condition_rows-0-filter0_property"' in html
    assert 'name="condition_rows-0-filter1_property"' not in html
    for kind, label, meaning in ROW_TYPES:
        assert f'<option value="{kind}">{label}</option>' in html
        assert f"<dt>{label}</dt><dd>{escape(meaning)}</dd>" in html
    assert [kind for kind, _, _ in ROW_TYPES] == list(LEAF_TYPES)
    assert (
        '<input type="radio" name="condition_mode" value="builder" id="id_condition_mode_0" '
        "checked>"
    ) in html
    assert '<textarea name="condition" cols="40" rows="18" class="milestone-json"' in html


def test_each_field_shows_for_the_types_that_use_it_and_explains_itself(
    admin_client: Client,
) -> None:
    html = _html(admin_client.get(_url("milestonedefinition_add")))

    row = _row_chunks(html)[0]
    kinds = re.findall(r'data-for="([^"]*)"><label for="id_condition_rows-0-(\w+)"', row)
    assert {field: shown for shown, field in kinds} == {
        "event": "event_count distinct_days streak property_sum distinct_count step",
        "at_least": "event_count distinct_count",
        "days": "distinct_days",
        "periods": "streak",
        "unit": "streak",
        "property": "property_sum",
        "total": "property_sum",
        "of": "distinct_count",
        "within": "event_count distinct_days property_sum distinct_count step",
        "trait": "attribute",
        "op": "attribute",
        "value": "attribute",
        "key": "milestone",
    }
    assert (
        '<div class="condition-group" data-for="event_count distinct_days streak property_sum '
        'distinct_count step"><table class="condition-filters">'
    ) in row
    assert "calendar days in the customer&#x27;s time zone" in row
    assert "&quot;7 days&quot;, &quot;36 hours&quot;, &quot;2 weeks&quot; or " in row
    assert "or the word customer to count different customers" in row
    assert "put text that looks like one in quotes (&quot;42&quot;)" in row


# --- Saving rows ----------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "row"), EVERY_KIND, ids=LEAF_TYPES)
def test_one_row_of_each_kind_saves_its_condition_exactly(
    admin_client: Client, onboarded: MilestoneDefinition, condition: dict[str, Any],
    row: dict[str, str],
) -> None:  # fmt: skip
    response = admin_client.post(_url("milestonedefinition_add"), _rows(_form(), row))

    assert response.status_code == 302
    saved = MilestoneDefinition.objects.get(key="activated")
    assert saved.condition == condition
    assert same_json(saved.condition, condition)


def test_rows_in_their_order_save_an_all_of_through_the_service(
    admin_client: Client, onboarded: MilestoneDefinition
) -> None:
    # given: posted out of order; the Order numbers put them right
    rows = [{**row, "ORDER": str(len(EVERY_KIND) - index)}
            for index, (_, row) in enumerate(reversed(EVERY_KIND))]  # fmt: skip

    # when
    response = admin_client.post(
        _url("milestonedefinition_add"), _rows(_form(condition_match="all"), *rows), follow=True
    )

    # then
    definition = MilestoneDefinition.objects.get(key="activated")
    admin = User.objects.get(username="admin")
    expected = {"type": "all", "conditions": [condition for condition, _ in EVERY_KIND]}
    assert definition.condition == expected
    assert same_json(definition.condition, expected)
    assert (definition.status, definition.created_by, definition.active_version) == (
        DefinitionStatus.DRAFT,
        admin,
        None,
    )
    assert list(definition.changes.values_list("action", "user")) == [
        (ChangeAction.CREATED, admin.pk)
    ]
    assert response.redirect_chain[-1][1] == 302


def test_any_of_and_a_sequence_of_steps_are_saved_from_rows(admin_client: Client) -> None:
    steps = [
        {"event": "Cart Viewed", "type": "event_count", "at_least": "9"},  # type is ignored
        {"event": "Checkout Started", "within": "1 hour"},
        {"event": "Order Completed", "within": "1 day", "filter0_property": "total",
         "filter0_op": "gte", "filter0_value": "50"},
    ]  # fmt: skip
    any_rows = [{"type": "milestone", "key": "activated"}, EVERY_KIND[0][1]]

    admin_client.post(
        _url("milestonedefinition_add"), _rows(_form(condition_match="sequence"), *steps)
    )
    admin_client.post(
        _url("milestonedefinition_add"),
        _rows(_form(key="engaged", name="Engaged", condition_match="any"), *any_rows),
    )

    assert MilestoneDefinition.objects.get(key="activated").condition == {
        "type": "sequence",
        "steps": [
            {"event": "Cart Viewed"},
            {"event": "Checkout Started", "within": {"hours": 1}},
            {"event": "Order Completed", "within": {"days": 1},
             "where": [{"property": "total", "op": "gte", "value": 50}]},
        ],
    }  # fmt: skip
    assert MilestoneDefinition.objects.get(key="engaged").condition == {
        "type": "any",
        "conditions": [{"type": "milestone", "key": "activated"}, EVERY_KIND[0][0]],
    }


def test_deleted_and_blank_rows_are_left_out(admin_client: Client) -> None:
    rows = [
        {"type": "event_count", "event": "Dropped", "at_least": "1", "DELETE": "on"},
        {"type": "event_count", "event": "Report Created", "at_least": "3"},
        {"event": "", "at_least": "", "unit": "day"},
    ]

    response = admin_client.post(_url("milestonedefinition_add"), _rows(_form(), *rows))

    assert response.status_code == 302
    assert MilestoneDefinition.objects.get().condition == COUNT


# --- Refusals on their row and field --------------------------------------------------------


def test_a_bad_row_shows_its_error_next_to_it_and_saves_nothing(admin_client: Client) -> None:
    rows = [
        {"type": "event_count", "event": "Report Created", "at_least": "3"},
        {"type": "event_count", "event": "Report Created", "at_least": "1.5"},
    ]

    response = admin_client.post(
        _url("milestonedefinition_add"), _rows(_form(condition_match="all"), *rows)
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {
        "__all__": ["Condition 2 (Event count), At least: Must be a whole number of at least 1."]
    }
    assert [row.errors for row in form.condition_formset.forms] == [
        {},
        {"at_least": ["Must be a whole number of at least 1."]},
    ]
    first, second = _row_chunks(_html(response))
    error = (
        '<ul class="errorlist" id="id_condition_rows-1-at_least_error"><li>Must be a whole '
        'number of at least 1.</li></ul><label for="id_condition_rows-1-at_least">At least:'
    )
    assert second.startswith(' has-errors"><h3><span class="condition-noun">Condition</span> 2')
    assert error in second
    assert "errorlist" not in first
    assert _counts() == (0, 0, 0)


def test_a_bad_duration_and_a_bad_filter_land_on_their_fields(admin_client: Client) -> None:
    duration = admin_client.post(
        _url("milestonedefinition_add"),
        _rows(_form(), {"type": "event_count", "event": "A", "at_least": "3", "within": "soon"}),
    )
    bad_filter = admin_client.post(
        _url("milestonedefinition_add"),
        _rows(_form(), {"type": "event_count", "event": "A", "at_least": "3",
                        "filter0_property": "pages", "filter0_op": "gte",
                        "filter0_value": "many"}),
    )  # fmt: skip

    message = 'Write a duration such as "7 days", "36 hours", "2 weeks" or "1 day 6 hours".'
    duration_form = duration.context["adminform"].form
    assert duration_form.non_field_errors() == [f"Condition 1 (Event count), Within: {message}"]
    assert duration_form.condition_formset.forms[0].errors == {"within": [message]}
    filter_form = bad_filter.context["adminform"].form
    assert filter_form.non_field_errors() == [
        "Condition 1 (Event count), Filter 1 value: Must be a number."
    ]
    assert filter_form.condition_formset.forms[0].errors == {"filter0_value": ["Must be a number."]}
    assert (
        '<td><ul class="errorlist" id="id_condition_rows-0-filter0_value_error"><li>Must be a '
        'number.</li></ul><input type="text" name="condition_rows-0-filter0_value" value="many"'
    ) in _html(bad_filter)
    assert _counts() == (0, 0, 0)


def test_a_step_problem_names_the_step(admin_client: Client) -> None:
    response = admin_client.post(
        _url("milestonedefinition_add"),
        _rows(_form(condition_match="sequence"), {"event": "A", "within": "1 day"}),
    )

    form = response.context["adminform"].form
    message = "Leave this blank on the first step: there is no previous step to be within."
    assert form.non_field_errors() == [f"Step 1, Within: {message}"]
    assert form.condition_formset.forms[0].errors == {"within": [message]}
    assert '<span class="condition-noun">Step</span> 1' in _html(response)
    assert _counts() == (0, 0, 0)


def test_an_unknown_milestone_is_refused_on_the_row_that_names_it(admin_client: Client) -> None:
    rows = [COUNT_ROW, {"type": "milestone", "key": "nowhere"}]

    response = admin_client.post(
        _url("milestonedefinition_add"), _rows(_form(condition_match="all"), *rows)
    )

    form = response.context["adminform"].form
    assert form.non_field_errors() == [
        "Condition 2 (Another milestone), Milestone key: Unknown milestone 'nowhere'."
    ]
    assert [row.errors for row in form.condition_formset.forms] == [
        {},
        {"key": ["Unknown milestone 'nowhere'."]},
    ]
    assert _counts() == (0, 0, 0)


COUNT_ROW = {"type": "event_count", "event": "Report Created", "at_least": "3"}


def test_a_dependency_problem_without_a_row_to_name_is_said_for_the_condition(
    admin_client: Client, milestone: Make
) -> None:
    # given: engaged waits for onboarded; onboarded is edited to wait for engaged
    onboarded = milestone("onboarded", activate=False)
    milestone("engaged", activate=False, condition={"type": "milestone", "key": "onboarded"})
    page = admin_client.get(_url("milestonedefinition_change", onboarded.pk))
    data = _posted_back(page)
    data.update({"condition_rows-0-type": "milestone", "condition_rows-0-key": "engaged"})
    self_data = {**data, "condition_rows-0-key": "onboarded"}

    # when
    cycle = admin_client.post(_url("milestonedefinition_change", onboarded.pk), data)
    itself = admin_client.post(_url("milestonedefinition_change", onboarded.pk), self_data)

    # then
    assert cycle.context["adminform"].form.errors == {
        "__all__": ["Condition: milestone dependencies lead back to 'onboarded'"]
    }
    assert itself.context["adminform"].form.errors == {
        "__all__": [
            "Condition 1 (Another milestone), Milestone key: Milestone 'onboarded' cannot "
            "depend on itself."
        ]
    }
    onboarded.refresh_from_db()
    assert onboarded.condition == {"type": "event_count", "event": "Task Done", "at_least": 1}


def test_how_the_rows_combine_is_checked_against_how_many_there_are(admin_client: Client) -> None:
    two = admin_client.post(_url("milestonedefinition_add"), _rows(_form(), COUNT_ROW, COUNT_ROW))
    none = admin_client.post(_url("milestonedefinition_add"), _rows(_form(condition_match="any")))

    assert two.context["adminform"].form.errors == {
        "condition_match": [
            "“This one condition” takes one row: choose “all of” or “any of” to combine 2 "
            "conditions, or delete the rows you do not need."
        ]
    }
    assert none.context["adminform"].form.errors == {
        "condition_match": ["Add at least one condition row."]
    }
    assert _counts() == (0, 0, 0)


def test_other_fields_keep_their_errors_beside_the_rows(admin_client: Client) -> None:
    response = admin_client.post(
        _url("milestonedefinition_add"),
        _rows(_form(anchor="event", window="1 minute", condition_match="all"), COUNT_ROW),
    )

    assert response.context["adminform"].form.errors == {
        "anchor_event": ["name the event that starts the clock"]
    }
    assert _counts() == (0, 0, 0)


# --- Raw JSON mode --------------------------------------------------------------------------


def test_json_mode_saves_the_json_and_names_the_path_of_an_error(admin_client: Client) -> None:
    nested = {"type": "all", "conditions": [COUNT, {"type": "any", "conditions": [COUNT]}]}
    bad = {"type": "all", "conditions": [COUNT, {**COUNT, "at_least": 0}]}

    refused = admin_client.post(
        _url("milestonedefinition_add"),
        _form(condition_mode="json", condition=json.dumps(bad)),
    )
    saved = admin_client.post(
        _url("milestonedefinition_add"),
        _form(condition_mode="json", condition=json.dumps(nested)),
    )

    assert refused.context["adminform"].form.errors == {
        "condition": ["$.all[1].at_least: must be a whole number of at least 1"]
    }
    assert saved.status_code == 302
    assert MilestoneDefinition.objects.get().condition == nested


def test_json_mode_needs_the_json(admin_client: Client) -> None:
    response = admin_client.post(_url("milestonedefinition_add"), _form(condition_mode="json"))

    assert response.context["adminform"].form.errors == {"condition": ["This field is required."]}
    assert _counts() == (0, 0, 0)


def test_edits_in_the_editor_not_chosen_are_refused_rather_than_lost(
    admin_client: Client,
) -> None:
    json_edited = admin_client.post(
        _url("milestonedefinition_add"), _rows(_form(condition=json.dumps(COUNT)), COUNT_ROW)
    )
    rows_edited = admin_client.post(
        _url("milestonedefinition_add"),
        _rows(_form(condition_mode="json", condition=json.dumps(COUNT)), COUNT_ROW),
    )

    assert json_edited.context["adminform"].form.errors == {
        "condition_mode": ["The JSON was edited: choose “raw JSON” to save it, or undo that edit."]
    }
    assert rows_edited.context["adminform"].form.errors == {
        "condition_mode": [
            "The rows were edited too: choose “builder” to save them, or undo those edits."
        ]
    }
    assert _counts() == (0, 0, 0)


def test_a_post_without_the_mode_switch_is_read_as_json(admin_client: Client) -> None:
    data = _form(condition=json.dumps(COUNT), condition_match="")
    for name in [name for name in data if name.startswith("condition_")]:
        del data[name]

    response = admin_client.post(_url("milestonedefinition_add"), data)

    assert response.status_code == 302
    assert MilestoneDefinition.objects.get().condition == COUNT


# --- The change page ------------------------------------------------------------------------


def test_the_change_page_shows_a_stored_condition_as_its_rows(
    admin_client: Client, milestone: Make, onboarded: MilestoneDefinition
) -> None:
    condition = {"type": "any", "conditions": [condition for condition, _ in EVERY_KIND]}
    definition = milestone("activated", condition=condition)

    response = admin_client.get(_url("milestonedefinition_change", definition.pk))

    form = response.context["adminform"].form
    assert (form["condition_mode"].value(), form["condition_match"].value()) == ("builder", "any")
    rows = form.condition_formset.forms
    assert len(rows) == len(EVERY_KIND) + 1  # and one empty row to add a condition
    for row, (_, fields) in zip(rows, EVERY_KIND, strict=False):
        assert {name: row[name].value() for name in fields} == fields
    assert [row["ORDER"].value() for row in rows] == [1, 2, 3, 4, 5, 6, 7, None]
    assert [row.filter_count for row in rows] == [3, 1, 1, 1, 1, 1, 1, 1]
    assert response.context["condition_note"] == ""
    html = _html(response)
    assert 'name="condition_rows-0-filter1_value" value="2"' in html
    assert '<option value="any" selected>any one of the conditions below holds</option>' in html


def test_a_condition_the_rows_cannot_show_opens_as_json_saying_why(
    admin_client: Client, milestone: Make
) -> None:
    nested = {"type": "all", "conditions": [COUNT, {"type": "any", "conditions": [COUNT]}]}
    definition = milestone("activated", condition=nested)

    response = admin_client.get(_url("milestonedefinition_change", definition.pk))

    form = response.context["adminform"].form
    reason = (
        "Condition 2 is itself an “any of” group, and the builder shows only one level of grouping."
    )
    assert form["condition_mode"].value() == "json"
    assert form.condition_note == reason
    assert form.condition_formset.initial_form_count() == 0
    html = _html(response)
    assert (
        '<p class="condition-note">The builder cannot show this condition, so it opens as raw '
        f"JSON below. {reason}</p>"
    ) in html
    assert '<details class="condition-json" open><summary>Condition as JSON' in html


@pytest.mark.parametrize(
    "condition",
    [
        {"type": "all", "conditions": [{**COUNT, "at_least": 3.0}, EVERY_KIND[0][0]]},
        {"type": "sequence", "steps": [{"event": "A"}, {"event": "B", "within": {"hours": 36}}]},
        {"type": "any", "conditions": [COUNT, {"type": "any", "conditions": [COUNT]}]},
    ],
    ids=["rows", "steps", "json"],
)
def test_saving_the_page_untouched_keeps_the_condition_and_makes_no_version(
    admin_client: Client, milestone: Make, condition: dict[str, Any]
) -> None:
    # given
    definition = milestone("activated", condition=condition)
    page = admin_client.get(_url("milestonedefinition_change", definition.pk))

    # when
    response = admin_client.post(
        _url("milestonedefinition_change", definition.pk), _posted_back(page)
    )

    # then
    assert response.status_code == 302
    definition.refresh_from_db()
    assert same_json(definition.condition, condition)
    assert list(definition.versions.values_list("number", flat=True)) == [1]
    assert list(definition.changes.order_by("id").values_list("action", flat=True)) == [
        ChangeAction.CREATED,
        ChangeAction.ACTIVATED,
    ]


def test_editing_one_row_of_an_active_definition_makes_version_2_with_that_change(
    admin_client: Client, milestone: Make
) -> None:
    # given
    condition = {"type": "all", "conditions": [COUNT, EVERY_KIND[0][0]]}
    definition = milestone("activated", condition=condition)
    data = _posted_back(admin_client.get(_url("milestonedefinition_change", definition.pk)))
    data["condition_rows-1-filter1_value"] = "5"
    data["condition_rows-1-DELETE"] = ""

    # when
    response = admin_client.post(_url("milestonedefinition_change", definition.pk), data)

    # then
    assert response.status_code == 302
    definition.refresh_from_db()
    changed = {**EVERY_KIND[0][0], "where": [PLAN_PRO, {"property": "pages", "op": "gte",
                                                         "value": 5}]}  # fmt: skip
    assert definition.condition == {"type": "all", "conditions": [COUNT, changed]}
    assert [(v.number, v.condition) for v in definition.versions.order_by("number")] == [
        (1, condition),
        (2, {"type": "all", "conditions": [COUNT, changed]}),
    ]


def test_a_read_only_page_shows_the_stored_json_without_the_builder(
    client: Client, milestone: Make
) -> None:
    definition = milestone("activated")
    user = User.objects.create_user("viewer", password="irrelevant", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="milestones", codename__startswith="view")
    )
    client.force_login(user)

    response = client.get(_url("milestonedefinition_change", definition.pk))

    html = _html(response)
    assert response.status_code == 200
    assert "condition_formset" not in response.context
    assert 'id="milestone-condition-rows"' not in html
    assert "&quot;event&quot;: &quot;Task Done&quot;" in html
