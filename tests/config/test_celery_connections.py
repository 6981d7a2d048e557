"""Workers keep their database connection between tasks (as Django does between requests)
instead of Celery's fix-up opening a new one for every task."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from config.celery import _connections_tidy, app

pytestmark = pytest.mark.django_db(transaction=True)


def task(*, is_eager: bool = False) -> Any:
    return SimpleNamespace(request=SimpleNamespace(is_eager=is_eager))


def test_celerys_fix_up_never_closes_connections_itself() -> None:
    fixup = DjangoWorkerFixup(app)

    for _ in range(1000):
        fixup.close_database()

    assert fixup.db_reuse_max == 2**62
    assert fixup._db_recycles == 1000  # counted, never reached: no close


def test_a_usable_connection_is_kept_between_tasks(settings: Any) -> None:
    connection.ensure_connection()
    connection.close_at = None  # within CONN_MAX_AGE (None: no limit)
    before = connection.connection

    _connections_tidy(task=task())

    assert connection.connection is before


def test_a_connection_past_its_age_or_after_an_error_is_closed() -> None:
    connection.ensure_connection()
    connection.errors_occurred = True
    connection.needs_rollback = False
    # an unusable connection: the health check fails
    connection.connection.close()

    _connections_tidy(task=task())

    assert connection.connection is None
