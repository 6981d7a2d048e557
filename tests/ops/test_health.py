"""Liveness and readiness: /healthz always answers; /readyz answers 200 only while the
database, the broker and the beat heartbeat are all well, and never hangs on a dead broker."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import ANY

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test import Client

from ops.health import beat_verdict
from ops.selectors import Heartbeat
from ops.services import heartbeat_record
from tests.ops.conftest import T0

pytestmark = pytest.mark.django_db

SECOND = dt.timedelta(seconds=1)
HINT = "is `celery beat` running, with a worker on the maintenance queue?"
DATABASE_OK = {"ok": True, "detail": "postgresql answered", "duration_ms": ANY}
BROKER_OK = {"ok": True, "detail": "redis answered PING", "duration_ms": ANY}


@pytest.fixture
def beating(clock: time_machine.Traveller) -> None:
    """One beat process whose latest heartbeat ran 10 s ago."""
    heartbeat_record(origin="gen101@beat-1", now=T0 - 60 * SECOND)
    heartbeat_record(origin="gen101@beat-1", now=T0 - 10 * SECOND)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def test_healthz_answers_ok(client: Client) -> None:
    response = client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_healthz_answers_even_when_the_database_and_broker_are_down(
    client: Client, settings: Any
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    with connection.execute_wrapper(_database_down):
        response = client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_answers_200_when_every_check_passes(client: Client, beating: None) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": DATABASE_OK,
            "broker": BROKER_OK,
            "beat": {"ok": True, "detail": "last heartbeat 10 s ago", "duration_ms": ANY},
        },
    }
    assert "no-cache" in response["Cache-Control"]


def test_readyz_reports_how_long_each_check_took(client: Client, beating: None) -> None:
    checks = client.get("/readyz").json()["checks"]

    durations = [check["duration_ms"] for check in checks.values()]
    assert all(isinstance(ms, float) and 0 <= ms < 1000 for ms in durations), durations


def test_readyz_answers_503_when_the_database_fails(client: Client, beating: None) -> None:
    with connection.execute_wrapper(_database_down):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {
            "database": {
                "ok": False,
                "detail": "unavailable (OperationalError)",
                "duration_ms": ANY,
            },
            "broker": BROKER_OK,
            "beat": {
                "ok": False,
                "detail": "heartbeats unreadable: the database is unavailable",
                "duration_ms": ANY,
            },
        },
    }


def test_readyz_answers_503_at_once_when_the_broker_refuses_connections(
    client: Client, beating: None, settings: Any
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    started = time.perf_counter()
    response = client.get("/readyz")
    elapsed = time.perf_counter() - started

    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": DATABASE_OK,
        "broker": {"ok": False, "detail": "unavailable (ConnectionError)", "duration_ms": ANY},
        "beat": {"ok": True, "detail": "last heartbeat 10 s ago", "duration_ms": ANY},
    }
    assert elapsed < 1.0


def test_readyz_gives_up_on_a_broker_that_never_answers_after_one_second(
    client: Client, beating: None, settings: Any, silent_port: int
) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_port}/0"

    started = time.perf_counter()
    response = client.get("/readyz")
    elapsed = time.perf_counter() - started

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {
        "ok": False,
        "detail": "unavailable: no answer within 1 s",
        "duration_ms": ANY,
    }
    assert 1.0 <= elapsed < 2.0


def test_readyz_answers_503_before_beat_ever_sent_a_heartbeat(
    client: Client, clock: time_machine.Traveller
) -> None:
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["beat"] == {
        "ok": False,
        "detail": f"no heartbeat yet: {HINT}",
        "duration_ms": ANY,
    }
    assert response.json()["checks"]["database"] == DATABASE_OK


def test_readyz_accepts_a_heartbeat_exactly_the_maximum_age_old(
    client: Client, clock: time_machine.Traveller
) -> None:
    heartbeat_record(origin="gen101@beat-1")
    clock.move_to(T0 + 90 * SECOND)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["beat"]["detail"] == "last heartbeat 90 s ago"


def test_readyz_answers_503_once_the_heartbeat_is_older_than_the_maximum_age(
    client: Client, clock: time_machine.Traveller
) -> None:
    heartbeat_record(origin="gen101@beat-1")
    clock.move_to(T0 + 91 * SECOND)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["beat"] == {
        "ok": False,
        "detail": f"last heartbeat 91 s ago (max 90 s): {HINT}",
        "duration_ms": ANY,
    }


def test_readyz_reads_the_maximum_age_from_settings(
    client: Client, clock: time_machine.Traveller, settings: Any
) -> None:
    settings.READYZ_BEAT_MAX_AGE_SECONDS = 30
    heartbeat_record(origin="gen101@beat-1")
    clock.move_to(T0 + 31 * SECOND)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["beat"]["detail"] == (
        f"last heartbeat 31 s ago (max 30 s): {HINT}"
    )


def test_readyz_answers_503_while_two_beats_are_scheduling(
    client: Client, clock: time_machine.Traveller
) -> None:
    # given: two beat processes, both beating every 15 s for the last minute
    for second in range(0, 61, 15):
        at = T0 + second * SECOND
        heartbeat_record(origin="gen101@beat-1", now=at)
        heartbeat_record(origin="gen202@beat-2", now=at)
    clock.move_to(T0 + 61 * SECOND)

    # when
    response = client.get("/readyz")

    # then
    assert response.status_code == 503
    assert response.json()["checks"]["beat"] == {
        "ok": False,
        "detail": "2 beats are scheduling at once (gen101@beat-1, gen202@beat-2): run exactly one",
        "duration_ms": ANY,
    }


def test_readyz_stays_ready_across_a_beat_restart(
    client: Client, clock: time_machine.Traveller
) -> None:
    # given: the old beat beat until T0+30; the new one started at T0+25 (a 5 s overlap)
    for second in (0, 15, 30):
        heartbeat_record(origin="gen101@beat-1", now=T0 + second * SECOND)
    for second in (25, 40, 55):
        heartbeat_record(origin="gen202@beat-1", now=T0 + second * SECOND)
    clock.move_to(T0 + 60 * SECOND)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["beat"]["detail"] == "last heartbeat 5 s ago"


def test_load_balancer_checks_are_exempt_from_the_https_redirect_and_metrics_are_not(
    client: Client, settings: Any
) -> None:
    settings.SECURE_SSL_REDIRECT = True

    statuses = [client.get(path).status_code for path in ("/healthz", "/readyz", "/metrics")]

    assert statuses == [200, 503, 301]  # 503: no beat heartbeat in this test


def test_readyz_only_answers_get(client: Client) -> None:
    assert client.post("/readyz").status_code == 405


# --- The beat verdict (pure) -----------------------------------------------------------------

MAX_AGE = 90 * SECOND


def beat(origin: str, first: int, last: int) -> Heartbeat:
    return Heartbeat(origin=origin, first_at=T0 + first * SECOND, last_at=T0 + last * SECOND)


@pytest.mark.parametrize(
    ("heartbeats", "now", "ok", "detail"),
    [
        ([], 0, False, f"no heartbeat yet: {HINT}"),
        ([beat("a", 0, 100)], 105, True, "last heartbeat 5 s ago"),
        ([beat("a", 0, 100)], 190, True, "last heartbeat 90 s ago"),
        ([beat("a", 0, 100)], 191, False, f"last heartbeat 91 s ago (max 90 s): {HINT}"),
        # a restart: the old process stopped before the new one started
        ([beat("a", 0, 100), beat("b", 110, 170)], 175, True, "last heartbeat 5 s ago"),
        # a rolling restart overlapping 30 s (a third of the maximum age) is tolerated...
        ([beat("a", 0, 100), beat("b", 70, 170)], 175, True, "last heartbeat 5 s ago"),
        # ...a longer overlap is two beats
        (
            [beat("a", 0, 101), beat("b", 70, 170)],
            175,
            False,
            "2 beats are scheduling at once (a, b): run exactly one",
        ),
        # a second beat stopped long enough ago is no longer counted
        ([beat("a", 0, 100), beat("b", 0, 170)], 191, True, "last heartbeat 21 s ago"),
    ],
    ids=[
        "none",
        "fresh",
        "at-max-age",
        "stale",
        "restart",
        "short-overlap",
        "two-beats",
        "stopped-duplicate",
    ],
)
def test_the_beat_verdict(heartbeats: list[Heartbeat], now: int, ok: bool, detail: str) -> None:
    probe = beat_verdict(heartbeats, now=T0 + now * SECOND, max_age=MAX_AGE)

    assert (probe.ok, probe.detail) == (ok, detail)


def _database_down(*args: Any) -> Any:
    raise OperationalError("server closed the connection unexpectedly")
