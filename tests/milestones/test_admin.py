"""The milestones admin: condition editor, saving through the services, buttons, read-only lists."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.models import Customer
from milestones.conditions import parse_condition
from milestones.conditions.tree import FILTER_OPS
from milestones.forms import CONDITION_TYPES, FILTER_HELP
from milestones.models import (
    Backfill,
    BackfillStatus,
    ChangeAction,
    DefinitionChange,
    DefinitionStatus,
    LifecycleStage,
    MilestoneDefinition,
    MilestoneOutcome,
    MilestoneVersion,
    Progress,
    ProgressState,
    StageChange,
    Unit,
)
from tests.admin_html import cells
from tests.factories import AccountFactory, CustomerFactory, EventFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
COUNT = {"type": "event_count", "event": "Task Done", "at_least": 1}
HOUR = dt.timedelta(hours=1)
BUTTONS = ("activate", "archive", "backfill", "dry_run")


@pytest.fixture
def customer() -> Customer:
    return CustomerFactory(external_id="user-7", created_at=T0)


@pytest.fixture
def viewer_client(client: Client) -> Client:
    """Staff who may view milestones but not change them."""
    user = User.objects.create_user("viewer", password="irrelevant", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="milestones", codename__startswith="view")
    )
    client.force_login(user)
    return client


def _progress(
    definition: MilestoneDefinition,
    subject_id: int,
    *,
    state: str = ProgressState.IN_PROGRESS,
    done: int = 0,
    total: int = 1,
    took: dt.timedelta | None = None,
    unit: str = Unit.CUSTOMER,
) -> Progress:
    assert definition.active_version is not None
    return Progress.objects.create(
        version=definition.active_version,
        definition=definition,
        unit=unit,
        subject_id=subject_id,
        state=state,
        anchor_at=T0,
        deadline_at=T0 + dt.timedelta(days=14),
        achieved_at=None if took is None else T0 + took,
        done=done,
        total=total,
    )


def _form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": "activated",
        "name": "Activated",
        "description": "",
        "kind": "onboarding",
        "unit": "customer",
        "parent": "",
        "condition": json.dumps(COUNT),
        "anchor": "signup",
        "anchor_event": "",
        "anchor_milestone": "",
        "window": "",
        "eligibility": "{}",
    }
    data.update(overrides)
    return data


def _change_form(definition: MilestoneDefinition, **overrides: Any) -> dict[str, Any]:
    data = _form(
        name=definition.name,
        kind=definition.kind,
        unit=definition.unit,
        condition=json.dumps(definition.condition),
    )
    data.update(overrides)
    del data["key"]
    return data


def _url(name: str, *args: Any) -> str:
    return reverse(f"admin:milestones_{name}", args=args)


def _button(definition: MilestoneDefinition, name: str) -> str:
    return _url(f"milestonedefinition_{name}", definition.pk)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _html(response: Any) -> str:
    """The page with the whitespace between tags removed."""
    return re.sub(r">\s+<", "><", response.content.decode())


# --- Pages render ---------------------------------------------------------------------------


def _objects(milestone: Make, customer: Customer) -> dict[str, Any]:
    definition = milestone("activated")
    progress = _progress(definition, customer.pk)
    stage = LifecycleStage.objects.create(
        key="activated", name="Activated", rules=[{"milestone": "activated", "state": "achieved"}]
    )
    assert definition.active_version is not None
    return {
        "milestonedefinition": definition,
        "progress": progress,
        "milestoneoutcome": MilestoneOutcome.objects.create(
            version=definition.active_version,
            definition=definition,
            unit=Unit.CUSTOMER,
            subject_id=customer.pk,
            kind="achieved",
            occurred_at=T0,
        ),
        "backfill": Backfill.objects.get(version=definition.active_version),
        "definitionchange": DefinitionChange.objects.filter(definition=definition).first(),
        "lifecyclestage": stage,
        "stagechange": StageChange.objects.create(
            customer=customer, from_stage="new", to_stage="activated", cause="activated"
        ),
    }


@pytest.mark.parametrize(
    "model",
    [
        "milestonedefinition",
        "progress",
        "milestoneoutcome",
        "backfill",
        "definitionchange",
        "lifecyclestage",
        "stagechange",
    ],
)
def test_every_changelist_and_change_page_renders_for_a_superuser(
    admin_client: Client, milestone: Make, customer: Customer, model: str
) -> None:
    obj = _objects(milestone, customer)[model]

    changelist = admin_client.get(_url(f"{model}_changelist"))
    change = admin_client.get(_url(f"{model}_change", obj.pk))

    assert changelist.status_code == 200
    assert obj.pk in [row.pk for row in changelist.context["cl"].result_list]
    assert change.status_code == 200


def test_the_add_page_shows_the_condition_editor_and_its_help(admin_client: Client) -> None:
    response = admin_client.get(_url("milestonedefinition_add"))

    html = _html(response)
    form = response.context["adminform"].form
    assert response.status_code == 200
    assert (form["condition"].value(), form["eligibility"].value()) == ("", "{}")
    assert 'class="milestone-json"' in html
    assert "font-family: ui-monospace" in html
    for kind in CONDITION_TYPES:
        assert f"<dt><code>{kind.type}</code></dt>" in html
    for op in FILTER_OPS:
        assert f"<li><code>{op}</code>:" in html


def test_the_help_panel_covers_every_condition_type_with_an_example_that_parses() -> None:
    assert [kind.type for kind in CONDITION_TYPES] == [
        "event_count",
        "distinct_days",
        "streak",
        "property_sum",
        "distinct_count",
        "attribute",
        "milestone",
        "all",
        "any",
        "sequence",
    ]
    for kind in CONDITION_TYPES:
        parse_condition(json.loads(kind.example_json))  # raises if the example is wrong
    assert set(FILTER_HELP) == set(FILTER_OPS)


def test_the_change_page_shows_the_condition_pretty_printed(
    admin_client: Client, milestone: Make
) -> None:
    definition = milestone("activated", window=dt.timedelta(days=14))

    response = admin_client.get(_url("milestonedefinition_change", definition.pk))

    form = response.context["adminform"].form
    assert form["condition"].value() == (
        '{\n  "type": "event_count",\n  "event": "Task Done",\n  "at_least": 1\n}'
    )
    html = _html(response)
    assert "{\n  &quot;type&quot;: &quot;event_count&quot;," in html
    assert 'value="14 days"' in html


# --- The condition editor -----------------------------------------------------------------


def test_adding_a_definition_saves_a_draft_through_the_service(admin_client: Client) -> None:
    # when
    response = admin_client.post(
        _url("milestonedefinition_add"), _form(window="2 weeks"), follow=True
    )

    # then
    definition = MilestoneDefinition.objects.get()
    admin = User.objects.get(username="admin")
    assert (definition.key, definition.status, definition.condition) == (
        "activated",
        DefinitionStatus.DRAFT,
        COUNT,
    )
    assert definition.window == dt.timedelta(days=14)
    assert (definition.created_by, definition.active_version) == (admin, None)
    assert list(DefinitionChange.objects.values_list("action", "user")) == [
        (ChangeAction.CREATED, admin.pk)
    ]
    assert "Saved as a draft: nothing is evaluated until it is activated." in _messages(response)


def test_the_editor_refuses_an_invalid_tree_naming_the_bad_node_and_saves_nothing(
    admin_client: Client,
) -> None:
    # given
    condition = {"type": "all", "conditions": [COUNT, {**COUNT, "at_least": 1.5}]}

    # when
    response = admin_client.post(
        _url("milestonedefinition_add"), _form(condition=json.dumps(condition))
    )

    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "condition": ["$.all[1].at_least: must be a whole number of at least 1"]
    }
    assert "$.all[1].at_least: must be a whole number of at least 1" in _html(response)
    assert MilestoneDefinition.objects.count() == 0
    assert DefinitionChange.objects.count() == 0


def test_the_editor_explains_a_json_syntax_error_and_keeps_the_text(
    admin_client: Client,
) -> None:
    text = '{"type": "event_count" "event": "Task Done"}'

    response = admin_client.post(_url("milestonedefinition_add"), _form(condition=text))

    assert response.context["adminform"].form.errors == {
        "condition": ["Not valid JSON: Expecting ',' delimiter at line 1, column 24."]
    }
    assert "{&quot;type&quot;: &quot;event_count&quot; &quot;event&quot;" in _html(response)
    assert MilestoneDefinition.objects.count() == 0


def test_each_error_lands_on_the_field_it_is_about(admin_client: Client) -> None:
    response = admin_client.post(
        _url("milestonedefinition_add"),
        _form(
            anchor="event",
            window="1 minute",
            eligibility=json.dumps({"plans": ["pro"], "billing": "free"}),
            condition=json.dumps({"type": "milestone", "key": "nowhere"}),
        ),
    )

    assert response.context["adminform"].form.errors == {
        "condition": ["unknown milestone 'nowhere'"],
        "eligibility": ["$.billing: must be one of trial, paid"],
        "anchor_event": ["name the event that starts the clock"],
    }
    assert MilestoneDefinition.objects.count() == 0


def test_an_unreadable_window_is_refused(admin_client: Client) -> None:
    response = admin_client.post(_url("milestonedefinition_add"), _form(window="3 months"))

    assert response.context["adminform"].form.errors == {
        "window": ['Enter a duration such as "7 days", "36 hours" or "2 weeks".']
    }
    assert MilestoneDefinition.objects.count() == 0


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("7 days", dt.timedelta(days=7)),
        ("36h", dt.timedelta(hours=36)),
        ("2 weeks, 3 days", dt.timedelta(days=17)),
        ("1d12h", dt.timedelta(hours=36)),
        ("90 minutes", dt.timedelta(minutes=90)),
        ("3 00:00:00", dt.timedelta(days=3)),
    ],
)
def test_windows_are_written_in_words(
    admin_client: Client, text: str, window: dt.timedelta
) -> None:
    admin_client.post(_url("milestonedefinition_add"), _form(window=text))

    assert MilestoneDefinition.objects.get().window == window


def test_editing_an_active_definition_makes_version_2_and_keeps_version_1s_progress(
    admin_client: Client, milestone: Make, customer: Customer
) -> None:
    # given
    definition = milestone("activated")
    first = definition.active_version
    assert first is not None
    kept = _progress(definition, customer.pk, state=ProgressState.ACHIEVED, done=1, took=HOUR)
    new_condition = {**COUNT, "at_least": 3}

    # when
    response = admin_client.post(
        _url("milestonedefinition_change", definition.pk),
        _change_form(definition, condition=json.dumps(new_condition)),
        follow=True,
    )

    # then
    definition.refresh_from_db()
    first.refresh_from_db()
    assert [(v.number, v.condition) for v in definition.versions.order_by("number")] == [
        (1, COUNT),
        (2, new_condition),
    ]
    assert definition.active_version is not None
    assert definition.active_version.number == 2
    assert first.retired_at is not None
    assert list(Progress.objects.values_list("pk", "version_id", "state")) == [
        (kept.pk, first.pk, ProgressState.ACHIEVED)
    ]
    assert (
        "The change made a new version, v2, which is now active; a backfill evaluates existing "
        "subjects from history. Progress so far stays with the previous version."
    ) in _messages(response)
    assert list(definition.changes.order_by("id").values_list("action", flat=True)) == [
        ChangeAction.CREATED,
        ChangeAction.ACTIVATED,
        ChangeAction.EDITED,
        ChangeAction.VERSIONED,
    ]


def test_renaming_an_active_definition_makes_no_version(
    admin_client: Client, milestone: Make
) -> None:
    definition = milestone("activated")

    response = admin_client.post(
        _url("milestonedefinition_change", definition.pk),
        _change_form(definition, name="Fully activated"),
        follow=True,
    )

    definition.refresh_from_db()
    assert definition.name == "Fully activated"
    assert list(definition.versions.values_list("number", flat=True)) == [1]
    assert not any("new version" in text for text in _messages(response))


def test_an_invalid_edit_of_an_active_definition_changes_nothing(
    admin_client: Client, milestone: Make
) -> None:
    definition = milestone("activated")

    response = admin_client.post(
        _url("milestonedefinition_change", definition.pk),
        _change_form(definition, condition=json.dumps({"type": "streak", "event": "X"})),
    )

    assert response.context["adminform"].form.errors == {"condition": ["$.unit: is required"]}
    definition.refresh_from_db()
    assert definition.condition == COUNT
    assert MilestoneVersion.objects.count() == 1
    assert list(definition.changes.values_list("action", flat=True)) == [
        ChangeAction.ACTIVATED,
        ChangeAction.CREATED,
    ]


def test_the_key_cannot_be_changed_once_made(admin_client: Client, milestone: Make) -> None:
    definition = milestone("activated", activate=False)

    admin_client.post(
        _url("milestonedefinition_change", definition.pk),
        {**_change_form(definition), "key": "renamed"},
    )

    definition.refresh_from_db()
    assert definition.key == "activated"


def test_an_archived_definition_is_shown_but_not_editable(
    admin_client: Client, milestone: Make
) -> None:
    definition = milestone("activated")
    admin_client.post(_button(definition, "archive"))
    url = _url("milestonedefinition_change", definition.pk)

    page = admin_client.get(url)
    edit = admin_client.post(url, _change_form(definition, name="Edited"))

    assert page.status_code == 200
    assert 'name="_save"' not in _html(page)
    assert edit.status_code == 403
    definition.refresh_from_db()
    assert (definition.name, definition.status) == ("Activated", DefinitionStatus.ARCHIVED)


# --- The change page's sections -------------------------------------------------------------


def test_the_change_page_shows_statistics_versions_changes_and_the_latest_backfill(
    admin_client: Client, milestone: Make
) -> None:
    # given
    definition = milestone("activated")
    for subject_id, hours in enumerate((1, 2, 4), start=1):
        _progress(
            definition,
            subject_id,
            state=ProgressState.ACHIEVED,
            took=hours * HOUR,
            done=1,
        )
    _progress(definition, 9, state=ProgressState.MISSED)
    admin_client.post(
        _url("milestonedefinition_change", definition.pk),
        _change_form(definition, condition=json.dumps({**COUNT, "at_least": 2})),
    )
    definition.refresh_from_db()
    Backfill.objects.filter(version=definition.active_version).update(
        status=BackfillStatus.RUNNING, processed=50, total=200, method="sql"
    )

    # when
    response = admin_client.get(_url("milestonedefinition_change", definition.pk))

    # then: statistics are the new version's (no rows yet); v1 and v2 are listed
    html = _html(response)
    assert "<td>v2</td><td><a href=" in html
    assert "<td>0</td><td>—</td><td>—</td><td>—</td>" in html
    assert '<progress value="50" max="200" title="25%">25%</progress> 50/200 (25%)' in html
    assert "<td>sql</td>" in html
    assert "v2 <strong>(active)</strong>" in html
    assert "<td>v1</td>" in html
    assert "New version" in html
    assert "Edited draft" in html


def test_statistics_on_the_change_page_are_exact(admin_client: Client, milestone: Make) -> None:
    definition = milestone("activated")
    for subject_id, hours in enumerate((1, 2, 4), start=1):
        _progress(definition, subject_id, state=ProgressState.ACHIEVED, took=hours * HOUR)
    _progress(definition, 9, state=ProgressState.MISSED)

    response = admin_client.get(_url("milestonedefinition_change", definition.pk))

    html = _html(response)
    assert "<td>75.0%</td><td>2h 0m</td><td>3h 36m</td>" in html
    assert f"?definition__id__exact={definition.pk}&amp;state__exact=achieved" in html


def test_the_list_shows_version_completion_rate_and_median(
    admin_client: Client, milestone: Make
) -> None:
    definition = milestone("activated")
    for subject_id, hours in enumerate((1, 2, 4), start=1):
        _progress(definition, subject_id, state=ProgressState.ACHIEVED, took=hours * HOUR)
    _progress(definition, 9, state=ProgressState.MISSED)
    milestone("draft", activate=False)

    response = admin_client.get(_url("milestonedefinition_changelist"))

    html = _html(response)
    assert ("version_number", "v1") in cells(html)
    assert ("completion_rate", "75.0%") in cells(html)
    assert ("median_time", "2h 0m") in cells(html)
    assert ("version_number", "—") in cells(html)
    assert ("completion_rate", "—") in cells(html)


def test_the_list_filters_by_status_and_searches_by_key(
    admin_client: Client, milestone: Make
) -> None:
    active, draft = milestone("activated"), milestone("draft_one", activate=False)
    url = _url("milestonedefinition_changelist")

    by_status = admin_client.get(url, {"status__exact": "draft"})
    by_key = admin_client.get(url, {"q": "activ"})

    assert list(by_status.context["cl"].result_list) == [draft]
    assert list(by_key.context["cl"].result_list) == [active]


def test_the_definition_list_takes_the_same_queries_for_one_or_many_definitions(
    admin_client: Client, milestone: Make, django_assert_max_num_queries: Any
) -> None:
    # given
    url = _url("milestonedefinition_changelist")
    first = milestone("milestone_0")
    _progress(first, 1, state=ProgressState.ACHIEVED, took=HOUR)
    admin_client.get(url)  # warm the session and content-type caches
    # session, user, capped count, the page, its statistics (two queries without PostgreSQL)
    bound = 5 if connection.vendor == "postgresql" else 6
    with django_assert_max_num_queries(bound) as one:
        admin_client.get(url)
    for n in range(1, 40):
        definition = milestone(f"milestone_{n}")
        _progress(definition, n + 1, state=ProgressState.ACHIEVED, took=n * HOUR)

    # when
    with django_assert_max_num_queries(bound) as forty:
        response = admin_client.get(url)

    # then
    assert len(response.context["cl"].result_list) == 40
    assert len(forty.captured_queries) == len(one.captured_queries)
    assert not any("COUNT(*) AS" in q["sql"] and "LIMIT" not in q["sql"] for q in forty)


# --- Buttons ------------------------------------------------------------------------------


def test_activate_makes_version_1_live_and_queues_its_backfill(
    admin_client: Client, milestone: Make, django_capture_on_commit_callbacks: Any
) -> None:
    definition = milestone("activated", activate=False)

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(_button(definition, "activate"), follow=True)

    definition.refresh_from_db()
    assert definition.status == DefinitionStatus.ACTIVE
    assert definition.active_version is not None
    backfill = Backfill.objects.get()
    assert (definition.active_version.number, backfill.version) == (1, definition.active_version)
    assert backfill.requested_by == User.objects.get(username="admin")
    assert [c.args for c in callbacks if isinstance(c, partial)] == [(backfill.pk,)]
    assert response.redirect_chain == [(_url("milestonedefinition_change", definition.pk), 302)]
    assert _messages(response) == [
        "Activated version v1 of “Activated”. A backfill evaluates existing customers from history."
    ]


def test_archive_stops_the_milestone(admin_client: Client, milestone: Make) -> None:
    definition = milestone("activated")

    response = admin_client.post(_button(definition, "archive"), follow=True)

    definition.refresh_from_db()
    assert definition.status == DefinitionStatus.ARCHIVED
    assert _messages(response) == [
        "Archived “Activated”: it is no longer evaluated; its progress and outcomes are kept."
    ]


def test_backfill_queues_another_run_of_the_active_version(
    admin_client: Client, milestone: Make, django_capture_on_commit_callbacks: Any
) -> None:
    definition = milestone("activated")

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(_button(definition, "backfill"), follow=True)

    backfills = list(Backfill.objects.order_by("id"))
    assert len(backfills) == 2
    assert {b.version for b in backfills} == {definition.active_version}
    assert [c.args for c in callbacks if isinstance(c, partial)] == [(backfills[1].pk,)]
    assert _messages(response) == ["Backfill of v1 queued; its progress shows below."]
    assert definition.changes.filter(action=ChangeAction.BACKFILL).count() == 1


def test_a_refused_action_says_why_and_changes_nothing(
    admin_client: Client, milestone: Make
) -> None:
    draft = milestone("draft_one", activate=False)
    base = milestone("base")
    milestone("dependent", condition={"type": "milestone", "key": "base"})

    backfill = admin_client.post(_button(draft, "backfill"), follow=True)
    archive = admin_client.post(_button(base, "archive"), follow=True)
    activate = admin_client.post(_button(base, "activate"), follow=True)

    assert _messages(backfill) == ["Not backfilled: only an active milestone can be backfilled"]
    assert _messages(archive) == ["Not archived: 'dependent' depends on this milestone"]
    assert _messages(activate) == ["Not activated: this milestone is already active as it is"]
    assert Backfill.objects.filter(version__definition=draft).count() == 0
    base.refresh_from_db()
    assert (base.status, base.active_version.number if base.active_version else None) == (
        DefinitionStatus.ACTIVE,
        1,
    )


def test_dry_run_shows_counts_per_bucket_and_links_to_sample_customers(
    admin_client: Client, milestone: Make
) -> None:
    # given
    definition = milestone("activated", activate=False)
    signed_up = timezone.now() - dt.timedelta(days=1)
    doer = CustomerFactory(external_id="doer", created_at=signed_up)
    CustomerFactory(external_id="idler", created_at=signed_up)
    EventFactory(customer=doer, name="Task Done")

    # when
    response = admin_client.post(_button(definition, "dry_run"))

    # then
    assert response.status_code == 200
    assert response.context["result"].counts == {
        "achieved": 1,
        "missed": 0,
        "in_progress": 1,
        "ineligible": 0,
        "not_started": 0,
    }
    html = _html(response)
    doer_url = reverse("admin:customers_customer_change", args=(doer.pk,))
    assert f'<td>achieved</td><td>1</td><td><a href="{doer_url}">doer</a>' in html
    assert "Nothing was written." in html
    assert Progress.objects.count() == 0
    definition.refresh_from_db()
    assert definition.status == DefinitionStatus.DRAFT


def test_the_change_page_offers_the_buttons_that_fit_the_status(
    admin_client: Client, milestone: Make
) -> None:
    draft, active = milestone("draft_one", activate=False), milestone("activated")

    draft_page = _html(admin_client.get(_url("milestonedefinition_change", draft.pk)))
    active_page = _html(admin_client.get(_url("milestonedefinition_change", active.pk)))

    for name in ("activate", "dry_run", "archive"):
        assert f'action="{_button(draft, name)}"' in draft_page
    assert f'action="{_button(draft, "backfill")}"' not in draft_page
    for name in ("backfill", "dry_run", "archive"):
        assert f'action="{_button(active, name)}"' in active_page
    assert f'action="{_button(active, "activate")}"' not in active_page
    assert 'name="csrfmiddlewaretoken"' in draft_page


@pytest.mark.parametrize("button", BUTTONS)
def test_buttons_refuse_get(admin_client: Client, milestone: Make, button: str) -> None:
    definition = milestone("activated", activate=False)

    response = admin_client.get(_button(definition, button))

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    definition.refresh_from_db()
    assert (definition.status, MilestoneVersion.objects.count()) == (DefinitionStatus.DRAFT, 0)
    assert list(definition.changes.values_list("action", flat=True)) == [ChangeAction.CREATED]


@pytest.mark.parametrize("button", BUTTONS)
def test_buttons_refuse_staff_without_the_change_permission(
    viewer_client: Client, milestone: Make, button: str
) -> None:
    definition = milestone("activated")

    page = viewer_client.get(_url("milestonedefinition_change", definition.pk))
    response = viewer_client.post(_button(definition, button))

    assert page.status_code == 200
    assert f'action="{_button(definition, button)}"' not in _html(page)
    assert response.status_code == 403
    definition.refresh_from_db()
    assert definition.status == DefinitionStatus.ACTIVE
    assert (MilestoneVersion.objects.count(), Backfill.objects.count()) == (1, 1)
    assert definition.changes.count() == 2


def test_buttons_refuse_a_post_without_the_csrf_token(milestone: Make) -> None:
    definition = milestone("activated")
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("boss", password="irrelevant"))

    response = client.post(_button(definition, "archive"))

    assert response.status_code == 403
    definition.refresh_from_db()
    assert definition.status == DefinitionStatus.ACTIVE


def test_buttons_send_anonymous_visitors_to_the_login_page(client: Client, milestone: Make) -> None:
    definition = milestone("activated")

    response = client.post(_button(definition, "archive"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    definition.refresh_from_db()
    assert definition.status == DefinitionStatus.ACTIVE


def test_a_button_on_an_unknown_definition_is_not_found(admin_client: Client) -> None:
    response = admin_client.post(_url("milestonedefinition_archive", 999_999))

    assert response.status_code == 404


# --- Progress, outcomes, backfills, stages --------------------------------------------------


def test_the_progress_list_shows_bars_and_links_subjects_to_their_admin_page(
    admin_client: Client, milestone: Make, customer: Customer
) -> None:
    definition = milestone("activated")
    _progress(definition, customer.pk, done=2, total=3)

    response = admin_client.get(_url("progress_changelist"))

    html = _html(response)
    customer_url = reverse("admin:customers_customer_change", args=(customer.pk,))
    assert f'<a href="{customer_url}">user-7</a>' in html
    assert '<progress value="2" max="3" title="67%">67%</progress> 2/3' in html
    assert ("version_number", "v1") in cells(html)


def test_a_progress_page_names_and_links_its_subject(
    admin_client: Client, milestone: Make, customer: Customer
) -> None:
    row = _progress(milestone("activated"), customer.pk, done=1, total=2)

    response = admin_client.get(_url("progress_change", row.pk))

    customer_url = reverse("admin:customers_customer_change", args=(customer.pk,))
    html = _html(response)
    assert f'<a href="{customer_url}">user-7</a>' in html
    assert '<progress value="1" max="2" title="50%">50%</progress> 1/2' in html


def test_an_empty_condition_is_required(admin_client: Client) -> None:
    response = admin_client.post(_url("milestonedefinition_add"), _form(condition=""))

    assert response.context["adminform"].form.errors == {"condition": ["This field is required."]}
    assert MilestoneDefinition.objects.count() == 0


def test_account_progress_links_to_the_account_page(admin_client: Client, milestone: Make) -> None:
    account = AccountFactory(external_id="acme")
    definition = milestone("team_ready", unit=Unit.ACCOUNT)
    _progress(definition, account.pk, unit=Unit.ACCOUNT)

    response = admin_client.get(_url("progress_changelist"))

    account_url = reverse("admin:customers_account_change", args=(account.pk,))
    assert f'<a href="{account_url}">acme</a>' in _html(response)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state__exact": "achieved"}, ["achieved"]),
        ({"is_late__exact": "1"}, ["late"]),
        ({"unit__exact": "account"}, ["account"]),
    ],
)
def test_the_progress_list_filters_by_state_lateness_and_unit(
    admin_client: Client, milestone: Make, query: dict[str, str], expected: list[str]
) -> None:
    definition = milestone("activated")
    per_account = milestone("team_ready", unit=Unit.ACCOUNT)
    rows = {
        "open": _progress(definition, 1),
        "achieved": _progress(definition, 2, state=ProgressState.ACHIEVED, took=HOUR),
        "late": _progress(definition, 3, state=ProgressState.MISSED),
        "account": _progress(per_account, 1, unit=Unit.ACCOUNT),
    }
    Progress.objects.filter(pk=rows["late"].pk).update(is_late=True)
    names = {row.pk: name for name, row in rows.items()}

    response = admin_client.get(_url("progress_changelist"), query)

    assert [names[row.pk] for row in response.context["cl"].result_list] == expected


def test_the_progress_list_filters_by_definition(admin_client: Client, milestone: Make) -> None:
    first, second = milestone("first"), milestone("second")
    _progress(first, 1)
    wanted = _progress(second, 1)

    response = admin_client.get(_url("progress_changelist"), {"definition__id__exact": second.pk})

    assert list(response.context["cl"].result_list) == [wanted]


def test_the_progress_list_never_counts_the_whole_table_and_its_queries_are_fixed(
    admin_client: Client, milestone: Make, django_assert_max_num_queries: Any
) -> None:
    definition = milestone("activated")
    url = _url("progress_changelist")
    _progress(definition, CustomerFactory().pk)
    admin_client.get(url)
    # session, user, capped count, the page, the definition filter, the subjects' names
    with django_assert_max_num_queries(6) as one:
        admin_client.get(url)
    for _ in range(30):
        _progress(definition, CustomerFactory().pk)

    with django_assert_max_num_queries(6) as many:
        response = admin_client.get(url)

    assert len(response.context["cl"].result_list) == 31
    assert response.context["cl"].full_result_count is None
    assert len(many.captured_queries) == len(one.captured_queries)


@pytest.mark.parametrize("model", ["progress", "milestoneoutcome", "backfill", "stagechange"])
def test_what_evaluation_stores_cannot_be_added_edited_or_deleted(
    admin_client: Client, milestone: Make, customer: Customer, model: str
) -> None:
    obj = _objects(milestone, customer)[model]
    change_url = _url(f"{model}_change", obj.pk)

    add = admin_client.get(_url(f"{model}_add"))
    change = admin_client.post(change_url, {})
    delete = admin_client.post(_url(f"{model}_delete", obj.pk), {"post": "yes"})

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert 'name="_save"' not in _html(admin_client.get(change_url))


def test_definitions_cannot_be_deleted(admin_client: Client, milestone: Make) -> None:
    definition = milestone("activated", activate=False)

    response = admin_client.post(_url("milestonedefinition_delete", definition.pk), {"post": "yes"})

    assert response.status_code == 403
    assert MilestoneDefinition.objects.filter(pk=definition.pk).exists()


def test_the_backfill_list_shows_progress_bars(admin_client: Client, milestone: Make) -> None:
    definition = milestone("activated")
    Backfill.objects.update(status=BackfillStatus.FAILED, processed=3, total=4, error="boom")

    response = admin_client.get(_url("backfill_changelist"))

    html = _html(response)
    assert '<progress value="3" max="4" title="75%">75%</progress> 3/4' in html
    definition_url = _url("milestonedefinition_change", definition.pk)
    assert f'<a href="{definition_url}">activated</a> v1' in html


def test_a_stage_with_invalid_rules_is_refused_naming_the_bad_item(admin_client: Client) -> None:
    rules = [{"milestone": "activated", "state": "achieved"}, {"milestone": "x", "state": "won"}]

    response = admin_client.post(
        _url("lifecyclestage_add"),
        {"key": "engaged", "name": "Engaged", "priority": 10, "rules": json.dumps(rules)},
    )

    [message] = response.context["adminform"].form.errors["rules"]
    assert message.startswith("$[1].state: must be one of achieved, in_progress, ineligible")
    assert LifecycleStage.objects.count() == 0


def test_a_valid_stage_is_saved(admin_client: Client) -> None:
    rules = [{"milestone": "activated", "state": "achieved"}]

    admin_client.post(
        _url("lifecyclestage_add"),
        {
            "key": "engaged",
            "name": "Engaged",
            "priority": 10,
            "rules": json.dumps(rules),
            "is_active": "on",
        },
    )

    stage = LifecycleStage.objects.get()
    assert (stage.key, stage.priority, stage.rules, stage.is_active) == (
        "engaged",
        10,
        rules,
        True,
    )


# --- The customer and account pages ---------------------------------------------------------


def test_the_customer_page_shows_that_customers_milestones_with_progress_bars(
    admin_client: Client, milestone: Make, customer: Customer
) -> None:
    # given
    onboarding = milestone("onboarding", name="Onboarding done")
    habit = milestone("weekly_habit", name="Weekly habit")
    _progress(onboarding, customer.pk, state=ProgressState.ACHIEVED, done=1, took=HOUR)
    _progress(habit, customer.pk, done=1, total=4)
    _progress(habit, CustomerFactory().pk, done=3, total=4)

    # when
    response = admin_client.get(reverse("admin:customers_customer_change", args=(customer.pk,)))

    # then
    html = _html(response)
    assert response.status_code == 200
    assert re.search(r'<h2 id="fieldset-0-3-heading" class="[^"]*">Milestones</h2>', html)
    assert html.index("Onboarding done") < html.index("Weekly habit")
    assert '<progress value="1" max="1" title="100%">100%</progress> 1/1' in html
    assert '<progress value="1" max="4" title="25%">25%</progress> 1/4' in html
    assert "3/4" not in html
    habit_url = _url("milestonedefinition_change", habit.pk)
    assert f'<a href="{habit_url}">Weekly habit</a>' in html


def test_the_customer_page_escapes_milestone_names(
    admin_client: Client, milestone: Make, customer: Customer
) -> None:
    definition = milestone("scripted", name="<script>alert(1)</script>")
    _progress(definition, customer.pk)

    response = admin_client.get(reverse("admin:customers_customer_change", args=(customer.pk,)))

    html = _html(response)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_customer_with_no_milestones_says_so(admin_client: Client, customer: Customer) -> None:
    response = admin_client.get(reverse("admin:customers_customer_change", args=(customer.pk,)))

    assert "No milestones started yet." in _html(response)


def test_the_account_page_shows_the_accounts_milestones(
    admin_client: Client, milestone: Make
) -> None:
    account = AccountFactory()
    definition = milestone("team_ready", name="Team ready", unit=Unit.ACCOUNT)
    _progress(definition, account.pk, done=2, total=5, unit=Unit.ACCOUNT)

    response = admin_client.get(reverse("admin:customers_account_change", args=(account.pk,)))

    html = _html(response)
    assert "Team ready" in html
    assert '<progress value="2" max="5" title="40%">40%</progress> 2/5' in html
