"""The GDPR actions on the customer admin: export downloads JSON, erase asks first."""

from __future__ import annotations

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from customers.models import Customer
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

URL = "/admin/customers/customer/"


def staff(client: Client, *codenames: str) -> Client:
    user = get_user_model().objects.create_user(username="staff", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def test_export_downloads_the_customers_data_as_json(admin_client: Client) -> None:
    customer = CustomerFactory(email="ada@example.com")

    response = admin_client.post(URL, {"action": "gdpr_export", "_selected_action": [customer.pk]})

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="customer-{customer.pk}.json"'
    assert orjson.loads(response.content)["customer"]["email"] == "ada@example.com"


def test_erase_asks_for_confirmation_before_erasing(admin_client: Client) -> None:
    customer = CustomerFactory()
    chosen = {"action": "gdpr_erase", "_selected_action": [customer.pk]}

    asked = admin_client.post(URL, chosen)

    assert asked.status_code == 200
    assert b"This cannot be undone" in asked.content
    assert Customer.objects.filter(pk=customer.pk).exists()

    done = admin_client.post(URL, {**chosen, "confirm": "yes"})

    assert done.status_code == 302
    assert not Customer.objects.filter(pk=customer.pk).exists()


def test_the_actions_need_their_own_permissions(client: Client) -> None:
    customer = CustomerFactory()
    viewer = staff(client, "view_customer")

    page = viewer.get(URL)
    refused = viewer.post(
        URL, {"action": "gdpr_erase", "_selected_action": [customer.pk], "confirm": "yes"}
    )

    assert 'value="gdpr_export"' not in page.content.decode()
    assert 'value="gdpr_erase"' not in page.content.decode()
    assert refused.status_code == 200  # an action the user lacks is "no action selected"
    assert Customer.objects.filter(pk=customer.pk).exists()
