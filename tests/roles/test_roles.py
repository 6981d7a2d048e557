"""Roles: each group holds exactly its permissions, and the admin honours them."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from consent.models import Topic
from customers.admin import KEY_MANAGERS
from customers.services import source_create
from messaging.templating import template_save
from roles.definitions import ROLES, Role
from roles.services import role_permissions, roles_sync
from tests.admin_html import sidebar_links

AVAILABLE = [
    ("shop.view_order", "shop.order"),
    ("shop.change_order", "shop.order"),
    ("customers.view_source", "customers.source"),
    ("customers.view_customer", "customers.customer"),
    ("auth.view_user", "auth.user"),
]


def test_a_reading_role_views_its_apps_but_never_the_keys() -> None:
    role = Role(
        description="", views=("shop", "customers"), grants=frozenset({"shop.change_order"})
    )
    assert role_permissions(role, AVAILABLE) == {
        "shop.view_order",
        "shop.change_order",
        "customers.view_customer",
    }


def test_the_admin_role_holds_every_permission() -> None:
    role = Role(description="", everything=True)
    assert role_permissions(role, AVAILABLE) == {label for label, _ in AVAILABLE}


def test_a_grant_that_does_not_exist_is_refused() -> None:
    role = Role(description="", grants=frozenset({"shop.cancel_order"}))
    with pytest.raises(ImproperlyConfigured, match=r"unknown permissions shop.cancel_order"):
        role_permissions(role, AVAILABLE)


def _labels(group: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=group).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


@pytest.mark.django_db
def test_migrate_creates_the_four_groups() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLES)
    assert _labels("Admin") == {
        f"{app}.{codename}"
        for app, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }


@pytest.mark.django_db
def test_sync_puts_back_exactly_the_defined_permissions() -> None:
    analyst = Group.objects.get(name="Analyst")
    before = _labels("Analyst")
    analyst.permissions.add(Permission.objects.get(codename="add_template"))
    analyst.permissions.remove(Permission.objects.get(codename="view_journey"))
    held = roles_sync()
    assert _labels("Analyst") == before
    assert held["Analyst"] == len(before)
    assert roles_sync() == held  # idempotent


@pytest.mark.django_db
@pytest.mark.parametrize("group", ["Marketer", "Analyst", "Ops"])
def test_only_admin_touches_keys_users_and_roles(group: str) -> None:
    labels = _labels(group)
    assert not {label for label in labels if label.split(".")[0] == "auth"}
    # webhook endpoints too, even to view: their page shows the signing secret
    assert not {
        label for label in labels if label.endswith(("_source", "_apitoken", "_webhookendpoint"))
    }


@pytest.mark.django_db
def test_what_each_role_may_do() -> None:
    expected = {
        "Marketer": {
            "milestones.add_milestonedefinition": True,
            "journeys.change_journey": True,
            "messaging.change_template": True,
            "customers.view_customer": True,
            "customers.change_customer": False,
            "messaging.change_frequencycap": False,
            "reports.view_reports": True,
            "ops.view_ops_console": False,
        },
        "Analyst": {
            "milestones.view_milestonedefinition": True,
            "milestones.change_milestonedefinition": False,
            "messaging.change_template": False,
            "reports.view_reports": True,
            "ops.view_ops_console": False,
        },
        "Ops": {
            "ops.view_ops_console": True,
            "messaging.change_message": True,
            "journeys.change_notice": True,
            "django_celery_beat.change_periodictask": True,
            "milestones.change_milestonedefinition": False,
        },
    }
    for group, grants in expected.items():
        labels = _labels(group)
        assert {label: label in labels for label in grants} == grants, group


def _staff(client: Client, group: str) -> User:
    user = User.objects.create_user(f"{group.lower()}-user", password="unused-pw-1", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return user


ADMIN_PAGES = [
    # (role, url name, expected status)
    ("Marketer", "admin:milestones_milestonedefinition_add", 200),
    ("Marketer", "admin:customers_customer_changelist", 200),
    ("Marketer", "admin:messaging_frequencycap_add", 403),
    ("Marketer", "admin:customers_source_changelist", 403),
    ("Marketer", "admin:django_celery_beat_periodictask_changelist", 403),
    ("Analyst", "admin:milestones_milestonedefinition_changelist", 200),
    ("Analyst", "admin:milestones_milestonedefinition_add", 403),
    ("Analyst", "admin:journeys_journey_add", 403),
    ("Analyst", "admin:customers_source_changelist", 403),
    ("Analyst", "admin:journeys_webhookendpoint_changelist", 403),
    ("Marketer", "admin:journeys_webhookendpoint_changelist", 403),
    ("Ops", "admin:journeys_webhookendpoint_changelist", 403),
    ("Ops", "admin:django_celery_beat_periodictask_add", 200),
    ("Ops", "admin:messaging_message_changelist", 200),
    ("Ops", "admin:milestones_milestonedefinition_add", 403),
    ("Ops", "admin:customers_apitoken_changelist", 403),
    ("Admin", "admin:customers_source_add", 200),
    ("Admin", "admin:customers_apitoken_changelist", 200),
    ("Admin", "admin:auth_user_changelist", 200),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("group", "name", "status"), ADMIN_PAGES)
def test_the_admin_honours_each_role(client: Client, group: str, name: str, status: int) -> None:
    _staff(client, group)
    assert client.get(reverse(name)).status_code == status


@pytest.mark.django_db
def test_an_analyst_is_refused_an_edit(client: Client) -> None:
    topic = Topic.objects.create(key="tips", name="Tips")
    template = template_save(
        key="welcome", name="Welcome", channel="email", topic=topic, default_locale="en",
        variants={"en": {"subject": "Hi", "html": "<p>Hi</p>"}},
    )  # fmt: skip
    _staff(client, "Analyst")
    url = reverse("admin:messaging_template_change", args=[template.pk])
    assert client.get(url).status_code == 200  # read-only view
    response = client.post(url, {"name": "Renamed", "default_locale": "en", "variants": "{}"})
    assert response.status_code == 403
    template.refresh_from_db()
    assert template.name == "Welcome"


@pytest.mark.django_db
def test_only_admin_sees_a_write_key(client: Client) -> None:
    source_id = source_create(name="web app").id
    _staff(client, "Marketer")
    assert client.get(reverse("admin:customers_source_change", args=[source_id])).status_code == 403


@pytest.mark.django_db
def test_the_command_reports_each_role() -> None:
    out = StringIO()
    call_command("roles_sync", stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["Marketer", "Analyst", "Ops", "Admin"]
    assert lines[1].endswith("— Reads everything and the reports; changes nothing.")


def test_keys_are_managed_by_the_admin_role_that_roles_define() -> None:
    assert KEY_MANAGERS in ROLES
    assert ROLES[KEY_MANAGERS].everything


SIDEBAR_GROUPS = {
    # role: (links it must see, links it must not see)
    "Marketer": (
        {"/admin/milestones/milestonedefinition/", "/admin/journeys/journey/",
         "/admin/messaging/template/", "/admin/customers/customer/", "/admin/"},
        {"/admin/customers/source/", "/admin/customers/apitoken/", "/admin/ops/console/",
         "/admin/django_celery_beat/periodictask/", "/admin/auth/user/"},
    ),
    "Analyst": (
        {"/admin/milestones/milestonedefinition/", "/admin/audit/auditentry/", "/admin/"},
        {"/admin/customers/source/", "/admin/ops/console/", "/admin/auth/user/"},
    ),
    "Ops": (
        {"/admin/ops/console/", "/admin/django_celery_beat/periodictask/",
         "/admin/messaging/message/"},
        {"/admin/customers/source/", "/admin/customers/apitoken/", "/admin/auth/user/"},
    ),
    "Admin": (
        {"/admin/customers/source/", "/admin/customers/apitoken/", "/admin/auth/user/",
         "/admin/ops/console/"},
        set(),
    ),
}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("group", sorted(SIDEBAR_GROUPS))
def test_the_sidebar_shows_each_role_its_own_links(client: Client, group: str) -> None:
    _staff(client, group)
    links = {href for href, _ in sidebar_links(client.get("/admin/").content.decode())}
    must, must_not = SIDEBAR_GROUPS[group]
    assert must <= links, must - links
    assert not must_not & links, must_not & links


@pytest.mark.django_db
def test_the_audience_group_offers_segments_by_milestone_state(client: Client) -> None:
    _staff(client, "Marketer")
    links = sidebar_links(client.get("/admin/").content.decode())
    assert ("/admin/milestones/progress/", "Segments by milestone state") in links
    page = client.get("/admin/milestones/progress/?state__exact=missed")
    assert page.status_code == 200
