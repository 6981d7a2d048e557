"""``field__any``: list membership as one array parameter (``= ANY(%s)``)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import Customer, Device
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_it_finds_the_rows_of_the_list_in_one_short_statement() -> None:
    customers = CustomerFactory.create_batch(4)
    wanted = [customers[0].pk, customers[2].pk, 10**12]

    with CaptureQueriesContext(connection) as queries:
        found = sorted(Customer.objects.filter(pk__any=wanted).values_list("pk", flat=True))

    assert found == [customers[0].pk, customers[2].pk]
    assert " = ANY(" in queries[0]["sql"]


def test_it_works_on_text_and_foreign_key_columns() -> None:
    ada, bob = CustomerFactory(external_id="ada"), CustomerFactory(external_id="bob")
    Device.objects.create(customer=bob, token="t-1", platform="ios")

    assert list(Customer.objects.filter(external_id__any=["ada", "zed"])) == [ada]
    assert list(
        Device.objects.filter(customer_id__any=[bob.pk]).values_list("token", flat=True)
    ) == ["t-1"]


def test_an_empty_list_matches_nothing() -> None:
    CustomerFactory()

    assert Customer.objects.filter(pk__any=[]).count() == 0
