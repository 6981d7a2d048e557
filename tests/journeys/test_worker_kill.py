"""A worker killed with SIGKILL in the middle of advancing a journey's enrollments loses no
step and sends nothing twice: the runner commits a batch's steps, step runs and messages in
one transaction, so the killed batch rolls back whole and a restarted worker picks it up.

The worker is a real ``celery worker`` subprocess on the test database (committed data:
``transaction=True``) and the test's broker, advancing in small batches so the kill lands
while most of the work is still to do."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.utils import timezone

from config.celery import app
from consent.models import Topic
from customers.models import Customer
from journeys.models import Enrollment, Journey, StepRun
from journeys.runner import step_run_key
from journeys.services import journey_go_live, journey_save
from journeys.tasks import enrollments_advance_task
from messaging.models import Message
from messaging.templating import template_activate, template_save

pytestmark = pytest.mark.django_db(transaction=True)

ENROLLMENTS = 3_000
BATCH = 25  # enrollments per runner transaction: 120 of them, so a kill lands mid-run
QUEUES = ("journeys", "messages.email")
WAIT = dt.timedelta(days=2)
STEPS = [
    {"key": "nudge", "type": "send", "templates": ["nudge-email"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit"},
]
ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)  # a polling interval, not an ordering


def _database_url() -> str:
    db = settings.DATABASES["default"]  # the test database, while the test runs
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Worker:
    """``celery worker`` in a subprocess, on this test's database and broker."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "JOURNEYS_ADVANCE_BATCH": str(BATCH),
            # Nothing leaves the machine: the null backend accepts every email.
            "MESSAGING_BACKENDS": '{"email": "messaging.channels.null.NullBackend"}',
        }

    def start(self) -> None:
        celery = Path(sys.executable).with_name("celery")
        command = [
            str(celery), "-A", "config", "worker", "-Q", ",".join(QUEUES), "-c", "1", "-P",
            "solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "WARNING", "-n", f"journeys-kill-{os.getpid()}@%h",
        ]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603 - our own venv's celery, fixed arguments
            command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def worker(transactional_db: None) -> Iterator[Worker]:
    # Tasks other tests left on the broker name rows their database flush removed.
    app.control.purge()
    worker = Worker()
    yield worker
    worker.stop()  # before the database is flushed


@pytest.fixture
def enrolled(transactional_db: None) -> tuple[Journey, list[int]]:
    """A live send -> wait -> exit journey and ``ENROLLMENTS`` customers due at its send."""
    topic = Topic.objects.create(key="tips", name="Tips")
    template = template_save(
        key="nudge-email", name="Nudge", channel="email", topic=topic, default_locale="en",
        variants={"en": {"subject": "Still there?", "html": "<p>Pick up where you left.</p>"}},
    )  # fmt: skip
    template_activate(template_id=template.pk)
    journey = journey_save(
        key="nudge",
        name="Nudge",
        trigger={"kind": "event", "event": "Signed Up"},
        steps=STEPS,
    )
    version = journey_go_live(journey_id=journey.pk)
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        Customer(external_id=f"kill-{n}", email=f"kill-{n}@example.com", time_zone="UTC")
        for n in range(ENROLLMENTS)
    )
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(
            version=version, journey=journey, customer=customer, entry_key=f"seed:{customer.pk}",
            state="active", current_step="nudge", next_run_at=now, step_started_at=now,
            entered_at=now, updated_at=now,
        )
        for customer in customers
    )  # fmt: skip
    return journey, [e.pk for e in enrollments]


def test_a_worker_killed_mid_run_and_restarted_leaves_every_step_and_message_exactly_once(
    enrolled: tuple[Journey, list[int]], worker: Worker
) -> None:
    journey, ids = enrolled

    # given: a worker advancing the enrollments, batch after batch
    worker.start()
    enrollments_advance_task.delay()
    wait_for(lambda: StepRun.objects.count() >= 10 * BATCH, "ten batches are committed")

    # when: it is killed with SIGKILL, and a new one takes over at the beat's next tick
    worker.kill()
    at_kill = StepRun.objects.count()
    worker.start()
    enrollments_advance_task.delay()
    wait_for(
        lambda: Enrollment.objects.filter(state="waiting").count() == ENROLLMENTS,
        "every enrollment waits",
    )

    # then: the kill came with work left, and every enrollment took its send step once
    assert 10 * BATCH <= at_kill < ENROLLMENTS
    runs = list(StepRun.objects.values_list("enrollment_id", "step_key", "idempotency_key"))
    assert sorted(runs) == sorted((pk, "nudge", step_run_key(pk, "nudge")) for pk in ids)
    messages = dict(
        Message.objects.filter(journey_key=journey.key).values_list("idempotency_key", "pk")
    )
    assert sorted(messages) == sorted(step_run_key(pk, "nudge") for pk in ids)
    assert Message.objects.count() == ENROLLMENTS
    linked = dict(StepRun.objects.values_list("idempotency_key", "message_id"))
    assert linked == messages
    positions = set(
        Enrollment.objects.values_list("state", "current_step", "next_run_at", "step_started_at")
    )
    assert {(state, step) for state, step, _, _ in positions} == {("waiting", "pause")}
    assert all(started is not None and due == started + WAIT for _, _, due, started in positions)
