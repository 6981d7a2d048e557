"""The ops console in the admin: who may see it, what it shows (as a page and as JSON), that
a dead or hung broker never holds it, and the retry of failed messages."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config.celery import QUEUES
from messaging.models import Message, MessageStatus
from ops import console
from ops.services import heartbeat_record
from ops.task_counts import on_task_failure, on_task_success
from tests.admin_html import sidebar_links
from tests.ops import seed
from tests.ops.conftest import T0, staff_with

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("task_counts_cleared")]

URL = "/admin/ops/console/"
DATA_URL = "/admin/ops/console/data.json"
RETRY_URL = "/admin/ops/console/retry/"
SECOND = dt.timedelta(seconds=1)
BROKER_DOWN = "Broker unreachable: queue depths, workers and task counts unavailable"
SKIPPED = "skipped: the broker is unreachable"


@pytest.fixture(autouse=True)
def _quick_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    # No worker runs in these tests; the workers' own tests (test_workers.py) wait the full 1 s.
    monkeypatch.setattr(console, "WORKERS_TIMEOUT_SECONDS", 0.2)


@pytest.fixture
def viewer() -> AbstractUser:
    return staff_with("viewer", "ops.view_ops_console")


@pytest.fixture
def retrier() -> AbstractUser:
    return staff_with("retrier", "ops.view_ops_console", "messaging.change_message")


def signed_in(user: AbstractUser, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


@pytest.fixture
def failed() -> dict[str, int]:
    """Failed messages: one a retry can fix, one it cannot (ids by name); and one sent."""
    seed.message(MessageStatus.SENT, T0 - 10 * SECOND)
    seed.message(
        MessageStatus.FAILED,
        T0 - 5 * SECOND,
        reason="retries_exhausted",
        error="SMTP 451: try again later",
        failed_at=T0 - 4 * SECOND,
        attempts=6,
    )
    seed.message(
        MessageStatus.FAILED,
        T0 - 3 * SECOND,
        reason="bad_address",
        error="550 no such user",
        failed_at=T0 - 2 * SECOND,
        attempts=1,
    )
    exhausted, bad = Message.objects.filter(status=MessageStatus.FAILED).order_by("pk")
    return {"exhausted": exhausted.pk, "bad_address": bad.pk}


@pytest.fixture
def scheduled() -> None:
    """Two beat schedules (one disabled) and a beat that beats."""
    every = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    nightly = CrontabSchedule.objects.create(minute="0", hour="3")
    PeriodicTask.objects.create(
        name="milestones-sweep",
        task="milestones.deadlines_sweep",
        interval=every,
        last_run_at=T0 - 20 * SECOND,
        total_run_count=12,
    )
    PeriodicTask.objects.create(
        name="cleanup", task="maintenance.cleanup", crontab=nightly, enabled=False
    )
    heartbeat_record(origin="gen7@beat-1", now=T0 - 60 * SECOND)
    heartbeat_record(origin="gen7@beat-1", now=T0 - 5 * SECOND)


# --- Who may see it ------------------------------------------------------------------------


def test_a_user_with_the_permission_sees_the_console(viewer: AbstractUser) -> None:
    response = signed_in(viewer).get(URL)

    assert response.status_code == 200
    assert response.templates[0].name == "admin/ops/console.html"
    body = response.content.decode()
    for heading in ("Queues", "Pending work", "Workers", "Tasks in the last hour", "Beat"):
        assert f"<h2>{heading}</h2>" in body
    assert "<h2>Failed messages</h2>" in body
    assert BROKER_DOWN not in body


def test_a_superuser_sees_the_console() -> None:
    admin = get_user_model().objects.create_superuser(username="root", password="x" * 12)

    assert signed_in(admin).get(URL).status_code == 200
    assert signed_in(admin).get(DATA_URL).status_code == 200


def test_staff_without_the_permission_get_403(failed: dict[str, int]) -> None:
    # given: may retry messages in the send log, but not view the console
    client = signed_in(staff_with("support", "messaging.change_message"))

    # then
    assert client.get(URL).status_code == 403
    assert client.get(DATA_URL).status_code == 403
    assert client.post(RETRY_URL, {"message": [failed["exhausted"]]}).status_code == 403
    assert Message.objects.get(pk=failed["exhausted"]).status == MessageStatus.FAILED


def test_someone_not_signed_in_is_sent_to_the_admin_login(client: Client) -> None:
    response = client.get(URL)

    assert (response.status_code, response["Location"]) == (
        302,
        f"/admin/login/?next={URL}",
    )
    assert client.get(DATA_URL).status_code == 302


def test_the_admin_index_links_to_the_console_for_those_who_may_see_it(
    viewer: AbstractUser,
) -> None:
    link = (URL, "Ops console")

    assert link in sidebar_links(signed_in(viewer).get("/admin/").content.decode())
    assert link not in sidebar_links(signed_in(staff_with("other")).get("/admin/").content.decode())


# --- What it shows -------------------------------------------------------------------------


def test_the_json_endpoint_carries_every_section(
    viewer: AbstractUser,
    clock: time_machine.Traveller,
    empty_queues: None,
    failed: dict[str, int],
    scheduled: None,
) -> None:
    # given: tasks counted in the last hour; one queued message due for 90 s
    send = type("Task", (), {"name": "messaging.email.send"})
    on_task_success(sender=send)
    on_task_failure(sender=send)
    seed.message(MessageStatus.QUEUED, T0 - 90 * SECOND)

    # when
    response = signed_in(viewer).get(DATA_URL)

    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    assert response.json() == {
        "generated_at": "2026-03-02T12:00:00+00:00",
        "broker": {"ok": True, "detail": "redis answered PING"},
        "broker_notice": "",
        "queues": {
            "ok": True,
            "detail": "redis answered",
            "depths": dict.fromkeys(QUEUES, 0),
        },
        "workers": {"ok": True, "detail": "0 answered within 0.2 s", "workers": []},
        "task_counts": {
            "ok": True,
            "detail": "the last 60 minutes",
            "tasks": [{"task": "messaging.email.send", "succeeded": 1, "failed": 1, "retried": 0}],
        },
        "pending": [
            {
                "work": "milestone_evaluations",
                "label": "Milestone evaluations",
                "oldest_due_at": None,
                "lag_seconds": 0.0,
            },
            {
                "work": "missed_deadlines",
                "label": "Missed-deadline sweep",
                "oldest_due_at": None,
                "lag_seconds": 0.0,
            },
            {
                "work": "journey_enrollments",
                "label": "Journey enrollments due",
                "oldest_due_at": None,
                "lag_seconds": 0.0,
            },
            {
                "work": "outbox",
                "label": "Outbox (queued messages due)",
                "oldest_due_at": "2026-03-02T11:58:30+00:00",
                "lag_seconds": 90.0,
            },
            {
                "work": "deferred_messages",
                "label": "Deferred messages due",
                "oldest_due_at": None,
                "lag_seconds": 0.0,
            },
        ],
        "beat": {
            "ok": True,
            "detail": "last heartbeat 5 s ago",
            "heartbeats": [
                {
                    "origin": "gen7@beat-1",
                    "first_at": "2026-03-02T11:59:00+00:00",
                    "last_at": "2026-03-02T11:59:55+00:00",
                }
            ],
        },
        "schedules": [
            {
                "name": "cleanup",
                "task": "maintenance.cleanup",
                "schedule": "0 3 * * * (m/h/dM/MY/d) UTC",
                "enabled": False,
                "last_run_at": None,
                "total_run_count": 0,
            },
            {
                "name": "milestones-sweep",
                "task": "milestones.deadlines_sweep",
                "schedule": "every 30 seconds",
                "enabled": True,
                "last_run_at": "2026-03-02T11:59:40+00:00",
                "total_run_count": 12,
            },
        ],
        "failed_messages": [
            {
                "id": failed["bad_address"],
                "channel": "email",
                "reason": "bad_address",
                "error": "550 no such user",
                "failed_at": "2026-03-02T11:59:58+00:00",
                "attempts": 1,
                "is_retryable": False,
            },
            {
                "id": failed["exhausted"],
                "channel": "email",
                "reason": "retries_exhausted",
                "error": "SMTP 451: try again later",
                "failed_at": "2026-03-02T11:59:56+00:00",
                "attempts": 6,
                "is_retryable": True,
            },
        ],
    }


def test_the_page_shows_the_same_data_without_javascript(
    retrier: AbstractUser,
    clock: time_machine.Traveller,
    empty_queues: None,
    failed: dict[str, int],
    scheduled: None,
) -> None:
    seed.tasks("milestones.ops_test_probe", 2)
    on_task_success(sender=type("Task", (), {"name": "journeys.enrollments_advance"}))

    body = _text(signed_in(retrier).get(URL).content.decode())

    assert "evaluate 2" in body
    assert "journeys.enrollments_advance 1 0 0" in body
    assert "Outbox (queued messages due) nothing due 0 s" in body
    assert "Heartbeat: last heartbeat 5 s ago" in body
    assert "gen7@beat-1 2026-03-02 11:59:00 UTC 2026-03-02 11:59:55 UTC" in body
    assert (
        "milestones-sweep milestones.deadlines_sweep every 30 seconds yes "
        "2026-03-02 11:59:40 UTC 12" in body
    )
    assert "cleanup maintenance.cleanup 0 3 * * * (m/h/dM/MY/d) UTC no never 0" in body
    assert (
        f"{failed['exhausted']} email retries_exhausted SMTP 451: try again later "
        "2026-03-02 11:59:56 UTC 6" in body
    )
    assert "Read at 2026-03-02 12:00:00 UTC" in body


def test_only_retryable_messages_can_be_ticked_and_only_by_whoever_may_retry(
    viewer: AbstractUser, retrier: AbstractUser, failed: dict[str, int]
) -> None:
    as_retrier = signed_in(retrier).get(URL).content.decode()
    as_viewer = signed_in(viewer).get(URL).content.decode()

    assert _ticks(as_retrier) == [str(failed["exhausted"])]
    assert 'value="Retry selected"' in as_retrier
    assert _ticks(as_viewer) == []
    assert 'value="Retry selected"' not in as_viewer


def test_failed_messages_are_the_newest_first_within_the_scanned_window(
    clock: time_machine.Traveller,
) -> None:
    for second in range(5):
        seed.message(MessageStatus.FAILED, T0 + second * SECOND, reason="bad_address")
    seed.message(MessageStatus.SENT, T0 + 5 * SECOND)
    ids = list(Message.objects.order_by("pk").values_list("pk", flat=True))

    found = console.failed_messages_read(shown=2, scanned=4)

    # the newest four messages hold three failures: the two newest are shown
    assert [m.id for m in found] == [ids[4], ids[3]]
    assert console.failed_messages_read(shown=10, scanned=4)[-1].id == ids[2]


def test_unconfirmed_sends_are_listed_and_retryable_as_messages_retry_takes_them(
    clock: time_machine.Traveller,
) -> None:
    seed.message(MessageStatus.UNCONFIRMED, T0, reason="")
    seed.message(MessageStatus.FAILED, T0 + SECOND, reason="bad_address")
    unconfirmed, failed = Message.objects.order_by("pk").values_list("pk", flat=True)

    found = console.failed_messages_read()

    assert [(m.id, m.is_retryable) for m in found] == [(failed, False), (unconfirmed, True)]


def test_the_failed_list_is_empty_before_any_message() -> None:
    assert console.failed_messages_read() == ()


# --- A broker that is down or hung ---------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def test_the_console_says_so_when_the_broker_is_down_and_shows_the_database(
    viewer: AbstractUser, settings: Any, failed: dict[str, int], scheduled: None
) -> None:
    # given
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    # when
    started = time.monotonic()
    response = signed_in(viewer).get(URL)
    elapsed = time.monotonic() - started

    # then: fast, plain about it, and every database section is there
    assert response.status_code == 200
    assert elapsed < 1.0
    body = _text(response.content.decode())
    assert f"{BROKER_DOWN} (unavailable (ConnectionError))." in body
    assert f"Messages waiting in the broker: {SKIPPED}" in body
    assert f"Workers that answered: {SKIPPED}" in body
    assert "milestones-sweep milestones.deadlines_sweep every 30 seconds" in body
    assert f"{failed['exhausted']} email retries_exhausted" in body
    assert "Milestone evaluations nothing due 0 s" in body


def test_the_json_says_so_when_the_broker_is_down(viewer: AbstractUser, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    data = signed_in(viewer).get(DATA_URL).json()

    assert data["broker"] == {"ok": False, "detail": "unavailable (ConnectionError)"}
    assert data["broker_notice"] == f"{BROKER_DOWN} (unavailable (ConnectionError))."
    assert data["queues"] == {"ok": False, "detail": SKIPPED, "depths": {}}
    assert data["workers"] == {"ok": False, "detail": SKIPPED, "workers": []}
    assert data["task_counts"] == {"ok": False, "detail": SKIPPED, "tasks": []}
    assert [p["work"] for p in data["pending"]] == list(console.WORK_LABELS)


def test_a_hung_broker_holds_the_console_for_its_one_second_ping_only(
    viewer: AbstractUser, settings: Any, silent_port: int
) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_port}/0"

    started = time.monotonic()
    data = signed_in(viewer).get(DATA_URL).json()
    elapsed = time.monotonic() - started

    assert data["broker_notice"] == f"{BROKER_DOWN} (unavailable: no answer within 1 s)."
    assert 1.0 <= elapsed < 2.0


def test_workers_that_never_answer_are_given_up_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: inspect hangs, as kombu's publish does when the broker dies after the ping
    release = threading.Event()
    monkeypatch.setattr(console, "workers_inspect", lambda timeout: release.wait(30))
    try:
        # when
        started = time.monotonic()
        read = console.workers_read(deadline=0.3)
        elapsed = time.monotonic() - started

        # then
        assert read == console.Workers(ok=False, detail="unavailable: no answer within 0.3 s")
        assert 0.3 <= elapsed < 0.6
        # and stuck queries never pile up: a few at most, then the console says it is busy
        for _ in range(console.WORKERS_IN_FLIGHT - 1):
            console.workers_read(deadline=0)
        assert console.workers_read(deadline=0) == console.Workers(
            ok=False, detail="busy: earlier queries are still waiting"
        )
    finally:
        release.set()
        for _ in range(console.WORKERS_IN_FLIGHT):  # every stuck query has come back
            assert console._inspecting.acquire(timeout=5)
        for _ in range(console.WORKERS_IN_FLIGHT):
            console._inspecting.release()


# --- Retry ---------------------------------------------------------------------------------


def test_retry_hands_retryable_failed_messages_back_to_the_policy(
    retrier: AbstractUser, failed: dict[str, int]
) -> None:
    response = signed_in(retrier).post(
        RETRY_URL, {"message": [failed["exhausted"], failed["bad_address"]]}, follow=True
    )

    assert response.redirect_chain == [(URL, 302)]
    statuses = dict(Message.objects.filter(pk__in=failed.values()).values_list("pk", "status"))
    assert statuses == {
        failed["exhausted"]: MessageStatus.DEFERRED,
        failed["bad_address"]: MessageStatus.FAILED,
    }
    assert [str(m) for m in response.context["messages"]] == [
        "1 message handed back to the delivery policy: it is weighed again (consent, "
        "suppressions, caps as they are now) at the next tick. 1 skipped: no longer failed, "
        "or failed in a way a retry cannot fix (a bad address, a template error)."
    ]


def test_retry_needs_the_permission_to_change_messages(
    viewer: AbstractUser, failed: dict[str, int]
) -> None:
    response = signed_in(viewer).post(RETRY_URL, {"message": [failed["exhausted"]]})

    assert response.status_code == 403
    assert Message.objects.get(pk=failed["exhausted"]).status == MessageStatus.FAILED


def test_retry_needs_the_csrf_token(retrier: AbstractUser, failed: dict[str, int]) -> None:
    # given: a browser that sends the CSRF cookie it was given with the page
    client = signed_in(retrier, enforce_csrf_checks=True)
    page = client.get(URL).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None

    # when: a forged form without the token, then the console's own form
    forged = client.post(RETRY_URL, {"message": [failed["exhausted"]]})
    after_forged = Message.objects.get(pk=failed["exhausted"]).status
    genuine = client.post(
        RETRY_URL, {"message": [failed["exhausted"]], "csrfmiddlewaretoken": token[1]}
    )

    # then
    assert (forged.status_code, after_forged) == (403, MessageStatus.FAILED)
    assert genuine.status_code == 302
    assert Message.objects.get(pk=failed["exhausted"]).status == MessageStatus.DEFERRED


def test_retry_takes_posts_only(retrier: AbstractUser) -> None:
    assert signed_in(retrier).get(RETRY_URL).status_code == 405


def test_retry_of_nothing_says_so(retrier: AbstractUser) -> None:
    response = signed_in(retrier).post(RETRY_URL, {"message": ["x"]}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["No message was selected."]


# --- Helpers ---------------------------------------------------------------------------------


def _text(html: str) -> str:
    """The page's text with tags and runs of whitespace each made one space."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _ticks(html: str) -> list[str]:
    return re.findall(r'<input type="checkbox" name="message" value="(\d+)"', html)
