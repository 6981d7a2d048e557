"""PostgreSQL connections: statements a connection repeats are prepared."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_the_plan_cache_mode_is_set_on_every_connection() -> None:
    assert "-c plan_cache_mode=auto" in connection.settings_dict["OPTIONS"]["options"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == ("auto",)


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
