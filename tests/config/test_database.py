"""PostgreSQL connections: statements a connection repeats are prepared."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from config.plans import planned_each_time
from journeys.models import Enrollment
from journeys.runner import enrollments_write
from milestones.sql import Row, progress_lock, progress_write

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


def _prepared(fragment: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return int(cursor.fetchone()[0])


def test_statements_inside_planned_each_time_are_never_prepared() -> None:
    with planned_each_time():
        for _ in range(8):
            with connection.cursor() as cursor:
                cursor.execute("SELECT %s::int + 42 AS milepost_unprepared", [1])
    assert _prepared("AS milepost_unprepared") == 0
    for _ in range(8):  # the connection's threshold is back afterwards
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::int + 42 AS milepost_unprepared", [1])
    assert _prepared("AS milepost_unprepared") == 1


def test_joins_of_arrays_to_tables_are_planned_for_their_values() -> None:
    # A generic plan guesses an array parameter's length; made while a table was small it
    # hash-joins a sequential scan of the table, and the connection keeps it (plans.py).
    now = timezone.now()
    unsaved = [
        Enrollment(
            pk=10**12 + n, state="waiting", current_step="pause", next_run_at=now,
            step_started_at=now, variants={}, exit_reason="", updated_at=now,
        )
        for n in range(3)
    ]  # fmt: skip
    rows = [
        Row(id=10**12, version_id=1, definition_id=1, unit="customer", subject_id=1,
            anchor_at=now, updated_at=now, created_at=now)
    ]  # fmt: skip
    for subject in range(8):
        progress_lock([(1, subject), (2, subject)])
        progress_write(rows)
        enrollments_write(unsaved)
    assert _prepared("FROM milestones_progress p JOIN unnest") == 0
    assert _prepared("UPDATE milestones_progress AS p") == 0
    assert _prepared("UPDATE journeys_enrollment e") == 0
