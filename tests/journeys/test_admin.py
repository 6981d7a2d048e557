"""The journeys admin: the step-row editor saving through ``journey_save``, errors that name
the row and field, the POST buttons (go live, pause, archive, dry run, migrate), the report
on the journey page, and the read-only enrollments."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, cast

import pytest
from django import forms
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from customers.models import Customer
from journeys.enrollment import enroll, entries_from_outcomes
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyChange,
    JourneyStatus,
    JourneyVersion,
    StepRun,
)
from journeys.runner import enrollments_advance
from journeys.services import journey_go_live, journey_save
from messaging.models import Message, Template
from messaging.templating import template_archive
from milestones.models import MilestoneDefinition, MilestoneOutcome, OutcomeKind, Unit
from milestones.signals import OutcomeRecord
from tests.admin_html import error_notes
from tests.factories import CustomerFactory
from tests.journeys.conftest import MISSED, STEPS

pytestmark = pytest.mark.django_db


def _customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))  # type: ignore[no-untyped-call]


THREE_STEPS: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit", "outcome": "completed"},
]
#: Every row type, and a branch arm that needs raw JSON.
EVERY_TYPE: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pick", "priority": 5},
    {"key": "pick", "type": "branch", "branches": [
        {"when": {"trait": "plan", "op": "eq", "value": "pro"}, "next": "ab"},
        {"when": {"any": [{"stage": "active"}, {"milestone": "activated", "state": "missed"}]},
         "next": "await"},
        {"when": {"trait": "seats", "op": "gte", "value": 5}, "next": "mark"},
    ], "else": "done"},
    {"key": "ab", "type": "split", "variants": [
        {"name": "A", "weight": 70, "next": "mark"},
        {"name": "B", "weight": 30, "next": "done"},
    ]},
    {"key": "await", "type": "wait", "until": {"event": "Report Created", "filters": [
        {"property": "pages", "op": "gte", "value": 2}]},
     "timeout": {"days": 1, "hours": 12}, "timeout_next": "done", "next": "mark"},
    {"key": "mark", "type": "update", "set_traits": {"nudged": True}, "set_stage": "engaged",
     "next": "morning"},
    {"key": "morning", "type": "wait", "until_local_time": "10:00", "next": "done"},
    {"key": "done", "type": "exit"},
]  # fmt: skip
NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


# --- Helpers --------------------------------------------------------------------------------


def _url(name: str, *args: Any) -> str:
    return reverse(f"admin:journeys_{name}", args=args)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _html(response: Any) -> str:
    """The page with the whitespace between tags removed."""
    return re.sub(r">\s+<", "><", response.content.decode())


def _form(**overrides: Any) -> dict[str, Any]:
    """The add form with no step rows; ``_rows`` adds them."""
    data: dict[str, Any] = {
        "key": "setup-nudge",
        "name": "Setup nudge",
        "description": "",
        "trigger_kind": "milestone_missed",
        "trigger_milestone": "activated",
        "trigger_event": "",
        "trigger_filters": "",
        "trigger_stage": "",
        "entry_plans": "pro, team",
        "entry_regions": "",
        "entry_stages": "",
        "reentry": "never",
        "reentry_days": "",
        "holdout_percent": "10",
        "priority": "0",
        "goal_milestone": "activated",
        "goal_within": "14 days",
        "exit_milestones": "",
        "exit_events": "Unsubscribed",
        "steps_mode": "rows",
        "steps_json": "",
        "steps-TOTAL_FORMS": "0",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def _rows(data: dict[str, Any], *rows: dict[str, Any]) -> dict[str, Any]:
    for index, row in enumerate(rows):
        data.update({f"steps-{index}-{name}": value for name, value in row.items()})
    data["steps-TOTAL_FORMS"] = str(len(rows))
    return data


def _three_rows(**nudge: Any) -> list[dict[str, Any]]:
    """The three steps posted out of order; their Order numbers put them right."""
    return [
        {"key": "done", "type": "exit", "outcome": "completed", "ORDER": "3"},
        {"key": "nudge", "type": "send", "templates": "setup-help", "next": "pause",
         "ORDER": "1", **nudge},
        {"key": "pause", "type": "wait", "wait_for": "duration", "duration": "2 days",
         "next": "done", "ORDER": "2"},
    ]  # fmt: skip


def _put(data: dict[str, Any], bound: forms.BoundField) -> None:
    value = bound.value()
    if isinstance(bound.field, forms.BooleanField):
        if value:
            data[bound.html_name] = "on"
        return
    data[bound.html_name] = "" if value is None else str(value)  # value() is as rendered


def _posted_back(response: Any) -> dict[str, Any]:
    """What a browser posts for the change page when nobody edits anything."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for bound in form:
        _put(data, bound)
    for bound in form.steps_formset.management_form:
        _put(data, bound)
    for row in form.steps_formset.forms:
        for bound in row:
            _put(data, bound)
    return data


def _journey(steps: list[dict[str, Any]] | None = None, **fields: Any) -> Journey:
    values: dict[str, Any] = {"name": "Setup nudge", "trigger": MISSED, "steps": steps or STEPS}
    return journey_save(key=fields.pop("key", "setup-nudge"), **{**values, **fields})


def _live(steps: list[dict[str, Any]] | None = None, **fields: Any) -> Journey:
    journey = _journey(steps, **fields)
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def _outcome(customer: Customer, outcome_id: int = 1) -> OutcomeRecord:
    return OutcomeRecord(
        outcome_id, 1, 1, "activated", "customer", customer.pk, "missed", False, NOW
    )


def _counts() -> dict[str, int]:
    models: list[type[Model]] = [
        Journey, JourneyVersion, JourneyChange, Enrollment, StepRun, Message,
    ]  # fmt: skip
    return {model.__name__: model._default_manager.count() for model in models}


# --- Pages render ---------------------------------------------------------------------------


def test_the_list_shows_status_trigger_live_version_and_enrollment_counts(
    admin_client: Client, ready: None
) -> None:
    # given
    journey = _live(THREE_STEPS)
    _journey(key="draft", trigger={"kind": "event", "event": "Report Created"})
    for number in range(3):
        enroll(entries_from_outcomes([_outcome(_customer(), number)]), now=NOW)
    Enrollment.objects.filter(pk=Enrollment.objects.order_by("pk").first().pk).update(  # type: ignore[union-attr]
        state=EnrollmentState.COMPLETED
    )

    # when
    response = admin_client.get(_url("journey_changelist"))

    # then
    rows = {
        row.key: (row.status, admin.trigger(row), admin.live_version(row), admin.enrolled(row),
                  admin.in_progress(row))
        for row in response.context["cl"].result_list
        for admin in [response.context["cl"].model_admin]
    }  # fmt: skip
    assert rows == {
        "setup-nudge": ("live", "milestone “activated” missed", "v1", 3, 2),
        "draft": ("draft", "event “Report Created”", "—", 0, 0),
    }
    assert journey.pk in [row.pk for row in response.context["cl"].result_list]


def test_the_add_page_shows_an_empty_row_editor(admin_client: Client) -> None:
    response = admin_client.get(_url("journey_add"))

    html = _html(response)
    assert response.status_code == 200
    formset = response.context["steps_formset"]
    assert (formset.total_form_count(), formset.initial_form_count()) == (1, 0)
    assert 'id="journey-step-rows"' in html
    assert '<template id="journey-step-empty">' in html
    assert 'name="steps-__prefix__-type"' in html
    assert 'class="journey-buttons"' not in html


def test_the_change_page_shows_each_stored_step_as_a_row_of_its_type(
    admin_client: Client, ready: None
) -> None:
    journey = _journey(EVERY_TYPE)

    response = admin_client.get(_url("journey_change", journey.pk))

    rows = response.context["steps_formset"].forms
    assert [row["type"].value() for row in rows] == [
        "send", "branch", "split", "wait", "update", "wait", "exit", "",
    ]  # fmt: skip
    send, branch, split, until, update, morning, done, _ = rows
    assert (send["templates"].value(), send["priority"].value(), send["next"].value()) == (
        "setup-help",
        5,
        "pick",
    )
    assert [
        (arm["kind"].value(), arm["subject"].value(), arm["test"].value(), arm["value"].value(),
         arm["next"].value())
        for arm in branch.arms()
    ] == [
        ("trait", "plan", "eq", "pro", "ab"),
        ("json", None, None,
         '{"any": [{"stage": "active"}, {"state": "missed", "milestone": "activated"}]}', "await"),
        ("trait", "seats", "gte", "5", "mark"),
        (None, None, None, None, None),
        (None, None, None, None, None),
    ]  # fmt: skip
    assert branch["otherwise"].value() == "done"
    assert [(v["name"].value(), v["weight"].value(), v["next"].value()) for v in split.variants()][
        :3
    ] == [("A", 70, "mark"), ("B", 30, "done"), (None, None, None)]
    assert (
        until["wait_for"].value(), until["until_event"].value(), until["timeout"].value(),
        until["timeout_next"].value(),
    ) == ("event", "Report Created", "1 day 12 hours", "done")  # fmt: skip
    assert (update["set_stage"].value(), update["set_traits"].value()) == (
        "engaged",
        '{\n  "nudged": true\n}',
    )
    assert (morning["wait_for"].value(), morning["local_time"].value()) == (
        "until_local_time",
        "10:00",
    )
    assert done["outcome"].value() == "completed"
    form = response.context["adminform"].form
    assert (form["trigger_kind"].value(), form["trigger_milestone"].value()) == (
        "milestone_missed",
        "activated",
    )


# --- The editor -----------------------------------------------------------------------------


def test_adding_a_journey_with_three_rows_saves_it_in_row_order_through_the_service(
    admin_client: Client,
) -> None:
    # when
    response = admin_client.post(_url("journey_add"), _rows(_form(), *_three_rows()), follow=True)

    # then
    journey = Journey.objects.get()
    admin = User.objects.get(username="admin")
    assert journey.steps == THREE_STEPS
    assert (journey.key, journey.status, journey.active_version) == (
        "setup-nudge",
        JourneyStatus.DRAFT,
        None,
    )
    assert (journey.trigger, journey.entry_rules, journey.goal, journey.exit_when) == (
        {"kind": "milestone_missed", "milestone": "activated"},
        {"plans": ["pro", "team"]},
        {"milestone": "activated", "within": {"days": 14}},
        [{"event": "Unsubscribed"}],
    )
    assert str(journey.holdout_percent) == "10.00"
    assert list(JourneyChange.objects.values_list("action", "user")) == [("created", admin.pk)]
    assert "Saved as a draft: nobody enters until you press Go live." in _messages(response)


def test_a_bad_reference_names_the_row_and_field_and_saves_nothing(admin_client: Client) -> None:
    # when
    response = admin_client.post(_url("journey_add"), _rows(_form(), *_three_rows(next="nowhere")))

    # then
    assert response.status_code == 200
    form = response.context["adminform"].form
    # (nudge is the second row posted, first in its Order)
    assert form.non_field_errors() == ['Step 2 (“nudge”), Then go to: no step "nowhere"']
    rows = {row["key"].value(): row.errors for row in form.steps_formset.forms}
    assert rows == {"done": {}, "nudge": {"next": ['no step "nowhere"']}, "pause": {}}
    html = _html(response)
    assert error_notes(html) == ["Step 2 (“nudge”), Then go to: no step &quot;nowhere&quot;"]
    assert (
        '<h3>Step 2 “nudge”</h3><div class="step-group"><div class="step-field">'
        '<label for="id_steps-1-key">Key:</label>'
    ) in html
    assert (
        '<ul class="errorlist" id="id_steps-1-next_error"><li>no step &quot;nowhere&quot;</li>'
    ) in html
    assert (Journey.objects.count(), JourneyChange.objects.count()) == (0, 0)


def test_a_loop_and_a_bad_duration_and_a_bad_arm_each_land_on_their_field(
    admin_client: Client,
) -> None:
    rows = [
        {"key": "pick", "type": "branch", "arm0_kind": "trait", "arm0_subject": "plan",
         "arm0_test": "like", "arm0_value": "pro", "arm0_next": "done", "otherwise": "done"},
        {"key": "done", "type": "exit"},
    ]  # fmt: skip
    bad_arm = admin_client.post(_url("journey_add"), _rows(_form(), *rows))
    loop = admin_client.post(
        _url("journey_add"),
        _rows(_form(), {"key": "a", "type": "send", "templates": "setup-help", "next": "a"}),
    )
    duration = admin_client.post(
        _url("journey_add"),
        _rows(_form(), {"key": "a", "type": "wait", "wait_for": "duration", "duration": "soon"}),
    )

    ops = "eq, neq, gt, gte, lt, lte, in, contains, exists"
    assert bad_arm.context["adminform"].form.non_field_errors() == [
        f"Step 1 (“pick”), Test: must be one of {ops}"
    ]
    assert bad_arm.context["adminform"].form.steps_formset.forms[0].errors == {
        "arm0_test": [f"must be one of {ops}"]
    }
    assert loop.context["adminform"].form.non_field_errors() == [
        "Step 1 (“a”), Then go to: makes a loop (a -> a): every path must end at an exit step"
    ]
    assert duration.context["adminform"].form.non_field_errors() == [
        "Fix the step rows marked below."
    ]
    assert duration.context["adminform"].form.steps_formset.forms[0].errors == {
        "duration": [
            'Write a duration, e.g. "2 days", "36 hours", "1 day 6 hours" or "90 minutes".'
        ]
    }
    assert Journey.objects.count() == 0


def test_trigger_goal_and_exit_errors_land_on_their_plain_fields(admin_client: Client) -> None:
    response = admin_client.post(
        _url("journey_add"),
        _rows(
            _form(
                trigger_milestone="",
                goal_within="3 fortnights",
                exit_milestones="activated achieved\nonboarded someday",
                reentry="after_days",
                holdout_percent="60",
            ),
            *_three_rows(),
        ),
    )

    assert response.context["adminform"].form.errors == {
        "goal_within": [
            'Write a duration, e.g. "2 days", "36 hours", "1 day 6 hours" or "90 minutes".'
        ],
        "reentry_days": ["is required (at least 1) when re-entry is after N days"],
        "holdout_percent": ["must be between 0 and 50"],
    }
    fixed = admin_client.post(
        _url("journey_add"),
        _rows(
            _form(trigger_milestone="", exit_milestones="activated achieved\nonboarded someday"),
            *_three_rows(),
        ),
    )
    assert fixed.context["adminform"].form.errors == {
        "trigger_milestone": ["must be a non-empty string"]
    }
    exit_line = admin_client.post(
        _url("journey_add"),
        _rows(_form(exit_milestones="activated achieved\nonboarded someday"), *_three_rows()),
    )
    assert exit_line.context["adminform"].form.errors == {
        "exit_milestones": ["Line 2: must be one of achieved, missed, in_progress, ineligible"]
    }
    assert Journey.objects.count() == 0


def test_raw_json_mode_saves_the_json_and_names_the_path_of_an_error(admin_client: Client) -> None:
    bad = [{**THREE_STEPS[0], "next": "later"}, *THREE_STEPS[1:]]

    refused = admin_client.post(
        _url("journey_add"), _form(steps_mode="json", steps_json=json.dumps(bad))
    )
    saved = admin_client.post(
        _url("journey_add"), _form(steps_mode="json", steps_json=json.dumps(THREE_STEPS))
    )

    assert refused.context["adminform"].form.errors == {
        "steps_json": ['$[0].next: no step "later"']
    }
    assert saved.status_code == 302
    assert Journey.objects.get().steps == THREE_STEPS


def test_edits_in_the_editor_not_chosen_are_refused_rather_than_lost(
    admin_client: Client,
) -> None:
    response = admin_client.post(
        _url("journey_add"),
        _rows(_form(steps_json=json.dumps(THREE_STEPS)), *_three_rows()),
    )

    assert response.context["adminform"].form.errors == {
        "steps_mode": ["The JSON was edited: choose “raw JSON” to save it, or undo that edit."]
    }
    assert Journey.objects.count() == 0


def test_saving_the_page_untouched_keeps_every_stored_json_as_it_was(
    admin_client: Client, ready: None
) -> None:
    # given
    journey = _live(
        EVERY_TYPE,
        entry_rules={"plans": [], "regions": ["US"]},
        exit_when=[{"milestone": "activated"}],
    )
    page = admin_client.get(_url("journey_change", journey.pk))

    # when
    response = admin_client.post(_url("journey_change", journey.pk), _posted_back(page))

    # then
    assert response.status_code == 302
    journey.refresh_from_db()
    assert journey.steps == EVERY_TYPE
    assert (journey.entry_rules, journey.exit_when) == (
        {"plans": [], "regions": ["US"]},
        [{"milestone": "activated"}],
    )
    assert list(JourneyChange.objects.values_list("action", flat=True)) == ["went live", "created"]


def test_editing_one_row_of_a_live_journey_saves_the_working_copy_only(
    admin_client: Client, ready: None
) -> None:
    # given
    journey = _live(EVERY_TYPE)
    data = _posted_back(admin_client.get(_url("journey_change", journey.pk)))
    data["steps-1-arm2_value"] = "10"
    data["steps-3-timeout"] = "2 days"

    # when
    response = admin_client.post(_url("journey_change", journey.pk), data, follow=True)

    # then
    journey.refresh_from_db()
    branch, wait = journey.steps[1], journey.steps[3]
    assert branch["branches"][2] == {"when": {"trait": "seats", "op": "gte", "value": 10},
                                     "next": "mark"}  # fmt: skip
    assert branch["branches"][:2] == EVERY_TYPE[1]["branches"][:2]
    assert wait["timeout"] == {"days": 2}
    assert journey.active_version is not None
    assert journey.active_version.steps == EVERY_TYPE
    assert "Saved the working copy. The journey keeps running v1 until you press Go live." in (
        _messages(response)
    )


def test_a_deleted_row_is_left_out(admin_client: Client, ready: None) -> None:
    journey = _journey(THREE_STEPS)
    data = _posted_back(admin_client.get(_url("journey_change", journey.pk)))
    data["steps-1-DELETE"] = "on"
    data["steps-0-next"] = "done"

    admin_client.post(_url("journey_change", journey.pk), data)

    journey.refresh_from_db()
    assert journey.steps == [{**THREE_STEPS[0], "next": "done"}, THREE_STEPS[2]]


# --- Buttons --------------------------------------------------------------------------------


def test_buttons_are_post_forms_with_a_csrf_token_and_refuse_get(
    admin_client: Client, ready: None
) -> None:
    journey = _journey(THREE_STEPS)

    html = _html(admin_client.get(_url("journey_change", journey.pk)))

    for name in ("go-live", "dry-run", "archive"):
        action = f"/admin/journeys/journey/{journey.pk}/{name}/"
        assert re.search(
            rf'<form method="post" action="{action}"><input type="hidden" '
            r'name="csrfmiddlewaretoken" value="[^"]+">',
            html,
        ), name
    assert f"/admin/journeys/journey/{journey.pk}/pause/" not in html
    for name in ("go_live", "pause", "archive", "dry_run", "migrate"):
        assert admin_client.get(_url(f"journey_{name}", journey.pk)).status_code == 405


def test_a_post_without_the_csrf_token_is_refused(ready: None) -> None:
    journey = _journey(THREE_STEPS)
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("boss", password="irrelevant"))

    response = client.post(_url("journey_go_live", journey.pk))

    assert response.status_code == 403
    journey.refresh_from_db()
    assert (journey.status, JourneyVersion.objects.count()) == (JourneyStatus.DRAFT, 0)


def test_go_live_lists_every_problem_then_goes_live_once_they_are_fixed(
    admin_client: Client, ready: None
) -> None:
    # given
    journey = _journey(
        [{**THREE_STEPS[0], "templates": ["setup-help", "win-back"]}, *THREE_STEPS[1:]],
        goal={"milestone": "onboarded", "within": {"days": 7}},
    )

    # when
    refused = admin_client.post(_url("journey_go_live", journey.pk), follow=True)

    # then
    assert _messages(refused) == [
        "“Setup nudge” is not live: fix these first.",
        "template 'win-back' is not active",
        "milestone 'onboarded' is not active",
    ]
    html = _html(refused)
    assert (
        '<ul class="journey-problems"><li>template &#x27;win-back&#x27; is not active</li>'
        "<li>milestone &#x27;onboarded&#x27; is not active</li></ul>"
    ) in html
    journey.refresh_from_db()
    assert (journey.status, JourneyVersion.objects.count()) == (JourneyStatus.DRAFT, 0)

    # when
    journey_save(key=journey.key, steps=THREE_STEPS, goal=None)
    live = admin_client.post(_url("journey_go_live", journey.pk), follow=True)

    # then
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.LIVE
    assert journey.active_version is not None
    assert journey.active_version.number == 1
    assert _messages(live) == [
        "“Setup nudge” is live with v1: customers it triggers enter from now on. Running "
        "enrollments stay on the version they started on."
    ]
    assert "The saved working copy is the live version v1." in _html(live)


def test_pause_and_archive_call_their_services(admin_client: Client, ready: None) -> None:
    journey = _live(THREE_STEPS)

    paused = admin_client.post(_url("journey_pause", journey.pk), follow=True)
    journey.refresh_from_db()
    status_after_pause = journey.status
    archived = admin_client.post(_url("journey_archive", journey.pk), follow=True)
    journey.refresh_from_db()

    assert (status_after_pause, journey.status) == (JourneyStatus.PAUSED, JourneyStatus.ARCHIVED)
    assert _messages(paused) == [
        "Paused “Setup nudge”: nobody enters or moves on; enrollments keep their place until "
        "it goes live again."
    ]
    assert _messages(archived) == [
        "Archived “Setup nudge”: it stops for good; its history is kept."
    ]
    assert list(JourneyChange.objects.values_list("action", flat=True)[:2]) == [
        "archived",
        "paused",
    ]


def test_the_dry_run_page_shows_counts_and_plans_and_writes_nothing(
    admin_client: Client, ready: None
) -> None:
    # given
    journey = _journey(THREE_STEPS)
    definition = MilestoneDefinition.objects.get(key="activated")
    assert definition.active_version is not None
    customer = _customer(external_id="ada", phone="+14155550100", plan="pro")
    MilestoneOutcome.objects.create(
        version=definition.active_version, definition=definition, unit=Unit.CUSTOMER,
        subject_id=customer.pk, kind=OutcomeKind.MISSED,
        occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
    )  # fmt: skip
    before = _counts()

    # when
    response = admin_client.post(_url("journey_dry_run", journey.pk), {"hours": "6"})

    # then
    assert _counts() == before
    html = _html(response)
    assert response.status_code == 200
    assert response.context["hours"] == 6
    assert [(b["label"], b["count"]) for b in response.context["buckets"]] == [
        ("would enter", 1),
        ("would be held out (control group)", 0),
        ("would be kept out by the entry rules", 0),
        ("already entered (re-entry policy)", 0),
    ]
    assert response.context["deliveries"] == [("would go by SMS", 1)]
    assert "<td>nudge → pause: waits at “pause” for 2 days</td>" in html
    assert "<div><code>nudge</code>: Would go by SMS.</div>" in html
    assert ">ada</a>" in html


def test_migrate_moves_running_enrollments_and_says_what_stayed(
    admin_client: Client, ready: None
) -> None:
    # given
    old: list[dict[str, Any]] = [
        {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "linger"},
        {"key": "linger", "type": "wait", "duration": {"days": 5}, "next": "pause"},
        *THREE_STEPS[1:],
    ]
    journey = _live(old)
    customers = [_customer(phone="+14155550100") for _ in range(2)]
    made = enroll(entries_from_outcomes([_outcome(c, i) for i, c in enumerate(customers)]), now=NOW)
    enrollments_advance(now=NOW)
    Enrollment.objects.filter(pk=made[1].pk).update(current_step="pause")
    journey_save(key=journey.key, steps=THREE_STEPS)
    journey_go_live(journey_id=journey.pk)
    page = _html(admin_client.get(_url("journey_change", journey.pk)))

    # when
    response = admin_client.post(_url("journey_migrate", journey.pk), follow=True)

    # then
    assert "Move 2 running to v2" in page
    assert _messages(response) == [
        "Moved 1 running enrollment to v2. 1 stay on their version because their step is not "
        "in v2 or they are already in it (1 at v1 linger)."
    ]
    versions = dict(Enrollment.objects.values_list("pk", "version__number"))
    assert versions == {made[0].pk: 1, made[1].pk: 2}
    assert JourneyChange.objects.first().action == "migrated enrollments"  # type: ignore[union-attr]


def test_the_journey_page_shows_per_step_counts_and_the_lift(
    admin_client: Client, ready: None
) -> None:
    journey = _live(THREE_STEPS, goal={"milestone": "activated", "within": {"days": 14}})
    customer = _customer(phone="+14155550100")
    enroll(entries_from_outcomes([_outcome(customer)]), now=NOW)
    enrollments_advance(now=NOW)

    response = admin_client.get(_url("journey_change", journey.pk))

    html = _html(response)
    rows = [(r["step"].key, r["step"].entered, r["step"].waiting, r["step"].pending)
            for r in response.context["report_rows"]]  # fmt: skip
    assert rows == [("nudge", 1, 0, 1), ("pause", 1, 1, 0), ("done", 0, 0, 0)]
    assert (
        '<p id="journey-lift">Not enough data: a lift needs at least 100 enrollments in each '
        "group. Converted so far: in the journey 0.0% (0 of 1), held out — (0 of 0).</p>"
    ) in html
    by_version = admin_client.get(_url("journey_change", journey.pk), {"report_version": "1"})
    assert by_version.context["journey_report"].version == 1


# --- Enrollments ----------------------------------------------------------------------------


def test_enrollments_are_listed_filtered_and_shown_with_their_step_history_read_only(
    admin_client: Client, ready: None
) -> None:
    # given
    _live(THREE_STEPS)
    customer = _customer(external_id="ada", phone="+14155550100")
    (enrollment,) = enroll(entries_from_outcomes([_outcome(customer)]), now=NOW)
    enrollments_advance(now=NOW)
    message = Message.objects.get()

    # when
    listed = admin_client.get(_url("enrollment_changelist"), {"state__exact": "waiting"})
    other = admin_client.get(_url("enrollment_changelist"), {"state__exact": "completed"})
    page = admin_client.get(_url("enrollment_change", enrollment.pk))

    # then
    assert [e.pk for e in listed.context["cl"].result_list] == [enrollment.pk]
    assert list(other.context["cl"].result_list) == []
    html = _html(page)
    assert page.status_code == 200
    assert f'<a href="/admin/messaging/message/{message.pk}/change/">message {message.pk}</a>' in (
        html
    )
    assert "{&quot;templates&quot;: [&quot;setup-help&quot;]}" in html
    assert admin_client.get(_url("enrollment_add")).status_code == 403
    assert 'name="_save"' not in html
    assert Template.objects.count() == 1


def test_an_archived_template_shows_in_the_go_live_check(admin_client: Client, ready: None) -> None:
    journey = _journey(THREE_STEPS)
    template_archive(template_id=Template.objects.get(key="setup-help").pk)

    html = _html(admin_client.get(_url("journey_change", journey.pk)))

    assert (
        '<p class="errornote">Not ready to go live:</p><ul class="journey-problems">'
        "<li>template &#x27;setup-help&#x27; is not active</li></ul>"
    ) in html


def test_an_archived_journey_is_shown_read_only_with_its_stored_definition(
    admin_client: Client, ready: None
) -> None:
    # given
    journey = _live(THREE_STEPS)
    admin_client.post(_url("journey_archive", journey.pk))
    before = _counts()

    # when
    page = admin_client.get(_url("journey_change", journey.pk))
    edit = admin_client.post(_url("journey_change", journey.pk), {"name": "Renamed"})

    # then
    html = _html(page)
    assert page.status_code == 200
    assert "<p>Enters when: milestone “activated” missed.</p>" in html
    assert "<th>steps</th><td><pre>[\n  {\n    &quot;key&quot;: &quot;nudge&quot;," in html
    assert 'id="journey-step-rows"' not in html
    assert 'class="journey-buttons"' not in html
    assert 'id="journey-report"' in html
    assert edit.status_code == 403
    journey.refresh_from_db()
    assert journey.name == "Setup nudge"
    assert _counts() == before
