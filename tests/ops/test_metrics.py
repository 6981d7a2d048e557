"""GET /metrics: Prometheus text for a bearer of METRICS_TOKEN, read at scrape time from the
database and the broker, in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from ops.services import heartbeat_record
from ops.views import METRICS_DISABLED, METRICS_FORBIDDEN
from tests.ops import seed
from tests.ops.conftest import T0

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
TEXT = "text/plain; version=0.0.4; charset=utf-8"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def samples(body: bytes) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def queue_depths(**depths: int) -> Samples:
    queues = (
        "ingest",
        "evaluate",
        "journeys",
        "messages.email",
        "messages.sms",
        "messages.push",
        "maintenance",
    )
    return {
        ("milepost_celery_queue_messages", (("queue", queue),)): float(depths.get(queue, 0))
        for queue in queues
    }


def test_metrics_are_refused_until_a_token_is_configured(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 403
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == METRICS_DISABLED
    assert "METRICS_TOKEN" in METRICS_DISABLED


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}-and-more", f"Basic {TOKEN}", TOKEN, "Bearer"],
    ids=["missing", "wrong", "longer", "other-scheme", "no-scheme", "empty"],
)
def test_metrics_are_refused_without_the_right_bearer_token(
    client: Client, token: str, header: str | None
) -> None:
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}

    response = client.get("/metrics", **extra)

    assert (response.status_code, response.content.decode()) == (403, METRICS_FORBIDDEN)
    assert b"milepost_" not in response.content


def test_metrics_answer_a_bearer_of_the_token_in_prometheus_text_format(
    client: Client, token: str, empty_queues: None
) -> None:
    response = client.get("/metrics", **AUTH)

    assert response.status_code == 200
    assert response["Content-Type"] == TEXT
    assert "no-cache" in response["Cache-Control"]
    families = list(text_string_to_metric_families(response.content.decode()))
    assert {f.name: f.type for f in families} == {
        "milepost_events_ingested": "counter",
        "milepost_metrics_window_seconds": "gauge",
        "milepost_milestone_outcomes_recent": "gauge",
        "milepost_messages_recent": "gauge",
        "milepost_pending_lag_seconds": "gauge",
        "milepost_celery_broker_up": "gauge",
        "milepost_celery_queue_messages": "gauge",
        "milepost_beat_processes": "gauge",
    }
    assert all(family.documentation for family in families)


def test_the_token_scheme_is_case_insensitive(client: Client, token: str) -> None:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}")

    assert response.status_code == 200


def test_metrics_report_the_seeded_state_exactly(
    client: Client, token: str, clock: time_machine.Traveller, empty_queues: None
) -> None:
    # given
    seed.everything()
    seed.broker()
    heartbeat_record(origin="gen101@beat-1", now=T0 - dt.timedelta(seconds=12))

    # when
    response = client.get("/metrics", **AUTH)

    # then
    assert response.status_code == 200
    assert samples(response.content) == {
        ("milepost_events_ingested_total", ()): 1_000_003.0,
        ("milepost_metrics_window_seconds", ()): 300.0,
        ("milepost_milestone_outcomes_recent", (("kind", "achieved"),)): 2.0,
        ("milepost_milestone_outcomes_recent", (("kind", "missed"),)): 1.0,
        ("milepost_messages_recent", (("reason", ""), ("status", "queued"))): 2.0,
        ("milepost_messages_recent", (("reason", ""), ("status", "sent"))): 2.0,
        (
            "milepost_messages_recent",
            (("reason", "quiet_hours_deferred"), ("status", "deferred")),
        ): 1.0,
        ("milepost_messages_recent", (("reason", "frequency_cap"), ("status", "suppressed"))): 1.0,
        ("milepost_messages_recent", (("reason", "no_consent"), ("status", "suppressed"))): 1.0,
        ("milepost_pending_lag_seconds", (("work", "milestone_evaluations"),)): 45.0,
        ("milepost_pending_lag_seconds", (("work", "missed_deadlines"),)): 40.0,
        ("milepost_pending_lag_seconds", (("work", "journey_enrollments"),)): 25.0,
        ("milepost_pending_lag_seconds", (("work", "outbox"),)): 90.0,
        ("milepost_pending_lag_seconds", (("work", "deferred_messages"),)): 20.0,
        ("milepost_celery_broker_up", ()): 1.0,
        **queue_depths(maintenance=2, evaluate=1),
        ("milepost_beat_processes", ()): 1.0,
        ("milepost_beat_heartbeat_age_seconds", ()): 12.0,
    }


def test_the_recent_window_follows_its_setting(
    client: Client, token: str, clock: time_machine.Traveller, settings: Any, empty_queues: None
) -> None:
    settings.METRICS_WINDOW_SECONDS = 90
    seed.everything()

    found = samples(client.get("/metrics", **AUTH).content)

    assert found[("milepost_metrics_window_seconds", ())] == 90.0
    assert {key[1]: value for key, value in found.items() if key[0].endswith("_recent")} == {
        (("kind", "achieved"),): 1.0,
        (("kind", "missed"),): 0.0,
        (("reason", ""), ("status", "queued")): 1.0,
        (("reason", "quiet_hours_deferred"), ("status", "deferred")): 1.0,
    }


def test_nothing_due_reads_as_no_lag(
    client: Client, token: str, clock: time_machine.Traveller, empty_queues: None
) -> None:
    found = samples(client.get("/metrics", **AUTH).content)

    assert {key: value for key, value in found.items() if "_lag_" in key[0]} == {
        ("milepost_pending_lag_seconds", (("work", work),)): 0.0
        for work in (
            "milestone_evaluations",
            "missed_deadlines",
            "journey_enrollments",
            "outbox",
            "deferred_messages",
        )
    }


def test_an_unreachable_broker_reads_as_down_and_the_rest_is_still_reported(
    client: Client, token: str, clock: time_machine.Traveller, settings: Any
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    heartbeat_record(origin="gen101@beat-1")

    response = client.get("/metrics", **AUTH)

    found = samples(response.content)
    assert response.status_code == 200
    assert found[("milepost_celery_broker_up", ())] == 0.0
    assert [key for key in found if key[0] == "milepost_celery_queue_messages"] == []
    assert found[("milepost_beat_heartbeat_age_seconds", ())] == 0.0


def test_a_scrape_runs_a_fixed_number_of_queries_however_much_is_seeded(
    client: Client,
    token: str,
    clock: time_machine.Traveller,
    empty_queues: None,
    django_assert_num_queries: Any,
) -> None:
    seed.everything()

    # events 1, outcomes 2 (window start, count), messages 2, lags 5, heartbeats 1
    with django_assert_num_queries(11):
        assert client.get("/metrics", **AUTH).status_code == 200
