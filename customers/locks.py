"""Per-customer advisory locks for work that must be serialised per customer without
touching the customer row (delivery decisions, journey entry)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection


def customers_advisory_lock(namespace: int, customer_ids: Sequence[int]) -> None:
    """Hold transaction-scoped advisory locks ``(namespace, id)`` for ``customer_ids``, taken
    in id order so two transactions never deadlock. They neither block nor are blocked by
    writes to the customer rows. A no-op on SQLite, which has one writer at a time."""
    if connection.vendor != "postgresql" or not customer_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, t.id)) "
            "FROM (SELECT unnest(%s::int[]) AS id ORDER BY 1) t",
            [namespace, sorted(set(customer_ids))],
        )
