"""Admin for teams, webhook endpoints (secret shown, rotated by POST) and the notices outbox
(read-only but for retrying failed notices)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from journeys.models import Notice, Team, WebhookEndpoint
from journeys.notices import endpoint_secret

pytestmark = pytest.mark.django_db


def test_an_endpoint_is_added_with_the_events_it_wants_and_shows_its_secret(
    admin_client: Client,
) -> None:
    response = admin_client.post(
        "/admin/journeys/webhookendpoint/add/",
        {
            "name": "CRM",
            "url": "https://crm.example.com/milepost",
            "events": ["milestone.achieved", "journey.converted"],
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.name, endpoint.events) == ("CRM", ["milestone.achieved", "journey.converted"])
    page = admin_client.get(f"/admin/journeys/webhookendpoint/{endpoint.pk}/change/")
    assert endpoint_secret(endpoint) in page.content.decode()


def test_rotating_the_secret_takes_a_post(admin_client: Client) -> None:
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/in")
    before = endpoint_secret(endpoint)
    url = f"/admin/journeys/webhookendpoint/{endpoint.pk}/rotate/"

    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url)

    endpoint.refresh_from_db()
    assert (response.status_code, endpoint.secret_version) == (302, 2)
    assert endpoint_secret(endpoint) != before


def test_a_user_without_change_permission_cannot_rotate(
    client: Client, django_user_model: Any
) -> None:
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/in")
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
    client.force_login(viewer)

    response = client.post(f"/admin/journeys/webhookendpoint/{endpoint.pk}/rotate/")

    endpoint.refresh_from_db()
    assert (response.status_code, endpoint.secret_version) == (403, 1)


def test_a_team_is_added(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/journeys/team/add/",
        {"key": "sales", "name": "Sales", "email": "sales@acme.test", "webhook_url": ""},
    )

    assert response.status_code == 302
    assert list(Team.objects.values_list("key", "email")) == [("sales", "sales@acme.test")]


def test_failed_notices_are_retried_from_the_list(admin_client: Client) -> None:
    failed = Notice.objects.create(
        key="k1", kind="webhook", event="milestone.achieved", to="https://x.example.com",
        payload={}, status="failed", attempts=8, last_error="webhook 500",
    )  # fmt: skip
    delivered = Notice.objects.create(
        key="k2", kind="webhook", event="milestone.achieved", to="https://x.example.com",
        payload={}, status="delivered", attempts=1,
    )  # fmt: skip

    response = admin_client.post(
        "/admin/journeys/notice/",
        {"action": "retry", "_selected_action": [failed.pk, delivered.pk]},
        follow=True,
    )

    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert (failed.status, failed.attempts, delivered.status) == ("pending", 0, "delivered")
    assert "1 notice will be sent again. 1 skipped: only failed notices are retried." in (
        response.content.decode()
    )
    assert admin_client.get(f"/admin/journeys/notice/{failed.pk}/change/").status_code == 200
