"""GDPR over the API: export and erase need their own permissions, erasing needs a
confirmation, and both do what the services do."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission
from rest_framework.test import APIClient

from customers.models import Customer, Event
from customers.services import api_token_create
from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db


def client_with(*permissions: str, is_staff: bool = False) -> APIClient:
    user: AbstractUser = get_user_model().objects.create_user(
        username="-".join(("user", *permissions, str(is_staff))), is_staff=is_staff
    )
    for label in permissions:
        app, codename = label.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='t').key}")
    return client


@pytest.fixture
def customer() -> Customer:
    found = CustomerFactory(email="ada@example.com")
    EventFactory(customer=found, name="Signed Up")
    return found


def test_an_export_needs_both_permissions_not_just_staff(customer: Customer) -> None:
    url = f"/api/v1/customers/{customer.pk}/export/"

    staff = client_with(is_staff=True).get(url)
    half = client_with("customers.view_customer").get(url)
    full = client_with("customers.view_customer", "consent.view_consentrecord").get(url)

    assert (staff.status_code, half.status_code, full.status_code) == (403, 403, 200)
    body = full.json()
    assert body["customer"]["email"] == "ada@example.com"
    assert [e["name"] for e in body["events"]] == ["Signed Up"]


def test_an_export_of_an_unknown_customer_is_a_404() -> None:
    client = client_with("customers.view_customer", "consent.view_consentrecord")

    assert client.get("/api/v1/customers/999999/export/").status_code == 404


def test_erasing_needs_the_delete_permission_and_a_confirmation(customer: Customer) -> None:
    url = f"/api/v1/customers/{customer.pk}/erase/"
    eraser = client_with("customers.delete_customer")

    refused = client_with("customers.view_customer").post(url, {"confirm": True}, format="json")
    unconfirmed = eraser.post(url, {"confirm": False}, format="json")
    missing = eraser.post(url, {}, format="json")

    assert (refused.status_code, unconfirmed.status_code, missing.status_code) == (403, 400, 400)
    assert unconfirmed.json() == {"confirm": ["Must be true: erasing cannot be undone."]}
    assert Customer.objects.filter(pk=customer.pk).exists()

    erased = eraser.post(url, {"confirm": True}, format="json")

    assert erased.status_code == 200
    assert erased.json() == {"events": 1, "suppressed_addresses": 1, "messages_blanked": 0}
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert Event.objects.count() == 0
