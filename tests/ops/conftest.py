"""Ops fixtures: a frozen clock, empty broker queues, seeded pending work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import time_machine

from config.celery import app

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
