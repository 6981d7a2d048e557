"""Ops fixtures: a frozen clock, empty broker queues, no task counts, staff users."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import redis
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission

from config.celery import app
from ops import task_counts
from ops.selectors import broker_redis

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """The clock stands still at ``T0``; tests move it with ``clock.move_to``."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def empty_queues() -> Iterator[None]:
    """Every Celery queue on the test broker starts and ends empty (all priorities)."""
    app.control.purge()
    yield
    app.control.purge()


@pytest.fixture
def task_counts_cleared() -> Iterator[None]:
    """No task outcome counted before the test, and none left behind by it (in the test
    broker's Redis, read before the test may point the broker elsewhere)."""
    client = broker_redis()
    assert client is not None, "the ops tests need a Redis broker"
    with client:
        _task_counts_clear(client)
        yield
        _task_counts_clear(client)


def _task_counts_clear(client: redis.Redis) -> None:
    keys = list(client.scan_iter(match=f"{task_counts.PREFIX}*"))
    if keys:
        client.delete(*keys)


def staff_with(username: str, *permissions: str) -> AbstractUser:
    """A staff user holding exactly ``permissions`` ("app_label.codename")."""
    user: AbstractUser = get_user_model().objects.create_user(username=username, is_staff=True)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user
