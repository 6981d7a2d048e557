"""PostgreSQL connections: statements prepared per connection, plans always custom."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_plans_are_made_for_the_values_at_hand() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == ("force_custom_plan",)


def test_repeated_statements_are_prepared() -> None:
    assert connection.settings_dict["OPTIONS"]["server_side_binding"] is True
    for _ in range(6):
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::int + 41 AS milepost_probe", [1])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements "
            "WHERE statement LIKE 'SELECT $1::int + 41 AS milepost_probe%%'"
        )
        assert cursor.fetchone() == (1,)
