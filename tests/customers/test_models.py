"""Table shapes that the hot reads and the ingest path depend on."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _constraints(table: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        return dict(connection.introspection.get_constraints(cursor, table))


def test_a_customers_events_named_x_since_t_have_an_index_in_that_order() -> None:
    # (customer, name, occurred_at): an equality on the first two and a range on the third
    # is one index range scan (checked with EXPLAIN on 800k events: no filter step).
    index = _constraints("customers_event")["event_customer_name_time"]

    assert (index["columns"], index["index"], index["unique"]) == (
        ["customer_id", "name", "occurred_at"],
        True,
        False,
    )


def test_a_customers_timeline_and_account_events_have_their_indexes() -> None:
    constraints = _constraints("customers_event")

    assert constraints["event_customer_time"]["columns"] == ["customer_id", "occurred_at"]
    assert constraints["event_account_name_time"]["columns"] == [
        "account_id",
        "name",
        "occurred_at",
    ]


def test_replays_are_recognised_by_a_unique_source_and_message_id() -> None:
    unique = _constraints("customers_event")["event_unique_message"]

    assert (unique["columns"], unique["unique"]) == (["source_id", "message_id"], True)


def test_events_have_no_database_foreign_keys() -> None:
    # Deliberate: see the comment on Event.source and customers_merge.
    foreign_keys = [name for name, c in _constraints("customers_event").items() if c["foreign_key"]]

    assert foreign_keys == []
