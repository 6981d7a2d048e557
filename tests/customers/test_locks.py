"""Per-customer advisory locks take bigint ids and serialise per (namespace, customer)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from customers.locks import customers_advisory_lock

pytestmark = pytest.mark.django_db


def held_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        (count,) = cursor.fetchone()
    return int(count)


def test_ids_past_the_int_range_are_locked() -> None:
    with transaction.atomic():
        customers_advisory_lock(0x4D50, [2**40 + 7, 3, 2**31, 3])

        assert held_locks() == 3


def test_a_namespace_must_fit_in_15_bits() -> None:
    with pytest.raises(ValueError, match="15-bit"):
        customers_advisory_lock(2**15, [1])
