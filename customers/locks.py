"""Per-customer advisory locks for work that must be serialised per customer without
touching the customer row (delivery decisions, journey entry)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection


def customers_advisory_lock(namespace: int, customer_ids: Sequence[int]) -> None:
    """Hold transaction-scoped advisory locks ``(namespace, id)`` for ``customer_ids``, taken
    in id order so two transactions never deadlock. They neither block nor are blocked by
    writes to the customer rows. A no-op on SQLite, which has one writer at a time."""
    if not 0 <= namespace < 2**15:
        raise ValueError("an advisory-lock namespace is a 15-bit number")
    if connection.vendor != "postgresql" or not customer_ids:
        return
    # One bigint key per lock: the namespace (15 bits) in the top bits, XOR the id, so ids
    # past 2**31 work (the two-int form cannot take them); ids keep their order below 2**48.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock((%s::bigint << 48) # t.id)) "
            "FROM (SELECT unnest(%s::bigint[]) AS id ORDER BY 1) t",
            [namespace, sorted(set(customer_ids))],
        )
