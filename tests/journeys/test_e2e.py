"""Journeys end to end on PostgreSQL, Redis and a real Celery worker: events POSTed to the
Segment-compatible ingest endpoint are evaluated by the worker into milestone outcomes, the
outcomes enroll customers, the runner (on the worker) takes the steps, and the email arrives
at a real SMTP server while the in-app message is read over the REST inbox.

Nothing sleeps to order things: the worker's results are polled for with a deadline. The
missed deadline is reached by running the sweep with an explicit ``now`` past it."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from celery.contrib.testing.worker import start_worker
from celery.signals import task_failure
from django.test import Client
from django.utils import timezone

from config.celery import app
from consent.models import Topic
from customers.models import Customer
from customers.services import CreatedKey, source_create
from journeys.graph import SplitStep, graph_parse, is_holdout, split_variant
from journeys.models import Enrollment, Journey, StepRun
from journeys.runner import step_run_key
from journeys.services import journey_go_live, journey_save
from messaging.channels.registry import backends_reset
from messaging.models import Message
from messaging.templating import template_activate, template_save
from milestones.models import MilestoneOutcome, PendingEvaluation, Progress
from milestones.services import definition_activate, definition_create
from milestones.sweep import deadlines_sweep
from tests.api_clients import token_client, user_with
from tests.messaging.channels.conftest import RecordingSmtpHandler, free_port

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.timedelta(days=1)
QUEUES = ["evaluate", "journeys", "messages.email"]
_ids = itertools.count(1)

TEMPLATES: dict[str, tuple[str, dict[str, Any]]] = {
    "tips-email": (
        "email",
        {"subject": "Nice work, {{ customer.first_name }}", "html": "<p>Automate it next.</p>"},
    ),
    "tips-in-app-a": ("in_app", {"title": "Tip A", "body": "Automate your reports."}),
    "tips-in-app-b": ("in_app", {"title": "Tip B", "body": "Invite your team."}),
    "help-email": (
        "email",
        {
            "subject": "Need a hand, {{ customer.first_name }}?",
            "html": "<p>Here is a checklist.</p>",
        },
    ),
    "checklist-in-app": (
        "in_app",
        {
            "title": "Finish setting up",
            "body": "One task to go.",
            "cta_label": "Open",
            "cta_url": "/onboarding",
        },
    ),
    "export-in-app": ("in_app", {"title": "Exported!", "body": "Schedule it weekly."}),
}
TONE: dict[str, Any] = {
    "key": "tone",
    "type": "split",
    "variants": [
        {"name": "a", "weight": 1, "next": "tip-a"},
        {"name": "b", "weight": 1, "next": "tip-b"},
    ],
}
WELCOME: list[dict[str, Any]] = [
    {"key": "tips", "type": "send", "templates": ["tips-email"], "next": "tone"},
    TONE,
    {"key": "tip-a", "type": "send", "templates": ["tips-in-app-a"], "next": "pause"},
    {"key": "tip-b", "type": "send", "templates": ["tips-in-app-b"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 1}, "next": "done"},
    {"key": "done", "type": "exit"},
]
RESCUE: list[dict[str, Any]] = [
    {"key": "help", "type": "send", "templates": ["help-email"], "next": "nudge"},
    {"key": "nudge", "type": "send", "templates": ["checklist-in-app"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 3}, "next": "done"},
    {"key": "done", "type": "exit"},
]
ACHIEVED = {"kind": "milestone_achieved", "milestone": "activated"}


# --- Polling, the worker, the SMTP server -------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)  # a polling interval, not an ordering


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[RecordingSmtpHandler]:
    """A real SMTP server on a free loopback port, and Django's SMTP backend pointed at it
    (as ``tests/messaging/channels/conftest.py`` does; the worker shares these settings)."""
    handler = RecordingSmtpHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.MESSAGING_EMAIL_FROM = "Milepost <hello@milepost.example>"
    backends_reset()
    yield handler
    controller.stop()
    backends_reset()


@pytest.fixture
def worker(transactional_db: None, smtp_server: RecordingSmtpHandler) -> Iterator[list[str]]:
    """One embedded worker (two threads) on the queues of the flow; yields the failed tasks.
    It stops before the database is flushed."""
    failures: list[str] = []

    def on_failure(sender: Any = None, exception: BaseException | None = None, **kw: Any) -> None:
        failures.append(f"{getattr(sender, 'name', sender)}: {exception!r}")

    # Tasks other tests left on the broker name rows their database flush removed.
    app.control.purge()
    task_failure.connect(on_failure, weak=False)
    try:
        with start_worker(
            app,
            queues=QUEUES,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            shutdown_timeout=30,
        ):
            yield failures
    finally:
        task_failure.disconnect(on_failure)


@pytest.fixture
def write_key(transactional_db: None) -> CreatedKey:
    return source_create(name="web app")


@pytest.fixture
def send(client: Client, write_key: CreatedKey) -> Callable[..., None]:
    """POST Segment calls to /v1/batch with the source's write key."""

    def _send(*calls: dict[str, Any]) -> None:
        credentials = base64.b64encode(f"{write_key.key}:".encode()).decode()
        stamp = timezone.now().isoformat()
        batch = [{"messageId": f"e2e-{next(_ids)}", "timestamp": stamp, **c} for c in calls]
        response = client.post(
            "/v1/batch",
            data=orjson.dumps({"batch": batch}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Basic {credentials}",
        )
        assert (response.status_code, response.json()) == (200, {"success": True})

    return _send


def signup(user: str, name: str) -> dict[str, Any]:
    traits = {"email": f"{user}@example.com", "first_name": name, "timezone": "UTC"}
    return {"type": "identify", "userId": user, "traits": traits}


def task_done(user: str) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Task Completed"}


@pytest.fixture
def activated(transactional_db: None) -> None:
    """The templates the journeys send, and the milestone: two tasks within 5 days of signup."""
    topic = Topic.objects.create(key="tips", name="Tips")
    for key, (channel, fields) in TEMPLATES.items():
        template = template_save(
            key=key, name=key, channel=channel, topic=topic, default_locale="en",
            variants={"en": fields},
        )  # fmt: skip
        template_activate(template_id=template.pk)
    definition = definition_create(
        key="activated",
        name="Activated",
        kind="onboarding",
        condition={"type": "event_count", "event": "Task Completed", "at_least": 2},
        window=dt.timedelta(days=5),
    )
    definition_activate(definition=definition)


def live(key: str, trigger: dict[str, Any], steps: list[dict[str, Any]], **fields: Any) -> Journey:
    journey = journey_save(key=key, name=key, trigger=trigger, steps=steps, **fields)
    journey_go_live(journey_id=journey.pk)
    return Journey.objects.get(pk=journey.pk)


def customer(user: str) -> Customer:
    return Customer.objects.get(external_id=user)


def inbox(customer_id: int) -> list[dict[str, Any]]:
    reader = token_client(user_with("messaging", f"reader-{next(_ids)}", "view_message"))
    response = reader.get(f"/api/v1/customers/{customer_id}/inbox/")
    assert response.status_code == 200, response.json()
    return list(response.json()["results"])


def variant_of(journey_key: str, customer_id: int) -> str:
    step = graph_parse(WELCOME).step("tone")
    assert isinstance(step, SplitStep)
    return split_variant(journey_key, "tone", customer_id, step.variants).name


# --- The achieved path ----------------------------------------------------------------------


def test_an_achieved_milestone_sends_the_email_over_smtp_and_the_in_app_message_to_the_inbox(
    activated: None,
    worker: list[str],
    smtp_server: RecordingSmtpHandler,
    send: Callable[..., None],
) -> None:
    # given
    live("welcome", ACHIEVED, WELCOME)

    # when: the product reports a signup and two completed tasks
    send(signup("ada", "Ada"), task_done("ada"), task_done("ada"))

    # then: the worker evaluates, enrolls, runs the steps and sends the email
    wait_for(lambda: len(smtp_server.messages) == 1, "the email arrives")
    ada = customer("ada")
    enrollment = Enrollment.objects.get(customer=ada)
    wait_for(
        lambda: Message.objects.filter(customer=ada, status="sent").count() == 2,
        "both messages are sent",
    )
    assert list(MilestoneOutcome.objects.values_list("subject_id", "kind")) == [
        (ada.pk, "achieved")
    ]
    (received,) = smtp_server.messages
    assert (received["Subject"], received["To"], smtp_server.recipients) == (
        "Nice work, Ada",
        "ada@example.com",
        [["ada@example.com"]],
    )
    variant = variant_of("welcome", ada.pk)
    tip = f"tip-{variant}"
    email_message = Message.objects.get(idempotency_key=step_run_key(enrollment.pk, "tips"))
    in_app = Message.objects.get(idempotency_key=step_run_key(enrollment.pk, tip))
    assert (email_message.channel, email_message.journey_key, email_message.provider_id) == (
        "email",
        "welcome",
        str(received["Message-ID"]),
    )
    assert inbox(ada.pk) == [
        {
            "id": in_app.pk,
            "title": f"Tip {variant.upper()}",
            "body": "Automate your reports." if variant == "a" else "Invite your team.",
            "cta_label": "",
            "cta_url": "",
            "topic": "tips",
            "journey_key": "welcome",
            "created_at": in_app.created_at.isoformat().replace("+00:00", "Z"),
            "read_at": None,
        }
    ]
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.current_step, enrollment.variants) == (
        "waiting",
        "pause",
        {"tone": variant},
    )
    assert enrollment.step_started_at is not None
    assert enrollment.next_run_at == enrollment.step_started_at + DAY
    runs = StepRun.objects.filter(enrollment=enrollment).order_by("pk")
    assert [(r.step_key, r.message_id) for r in runs] == [
        ("tips", email_message.pk),
        ("tone", None),
        (tip, in_app.pk),
    ]
    assert worker == []


# --- The missed path ------------------------------------------------------------------------


def test_a_missed_deadline_sends_the_nurture_and_completing_the_milestone_ends_it(
    activated: None,
    worker: list[str],
    smtp_server: RecordingSmtpHandler,
    send: Callable[..., None],
) -> None:
    # given: a customer halfway there, and journeys for both outcomes
    rescue = live(
        "rescue",
        {"kind": "milestone_missed", "milestone": "activated"},
        RESCUE,
        exit_when=[{"milestone": "activated", "state": "achieved"}],
    )
    live("welcome", ACHIEVED, WELCOME)
    send(signup("bob", "Bob"), task_done("bob"))
    bob = customer("bob")
    wait_for(
        lambda: (
            not PendingEvaluation.objects.exists()
            and Progress.objects.filter(subject_id=bob.pk, state="in_progress").exists()
        ),
        "the first task is evaluated",
    )
    progress = Progress.objects.get(subject_id=bob.pk)
    assert progress.deadline_at == progress.anchor_at + 5 * DAY

    # when: the sweep runs a day past the deadline
    swept = deadlines_sweep(now=timezone.now() + 6 * DAY)

    # then: the nurture email arrives and the checklist is in the inbox
    assert swept.missed == 1
    wait_for(lambda: len(smtp_server.messages) == 1, "the nurture email arrives")
    assert (smtp_server.messages[0]["Subject"], smtp_server.recipients) == (
        "Need a hand, Bob?",
        [["bob@example.com"]],
    )
    enrollment = Enrollment.objects.get(journey=rescue)
    wait_for(
        lambda: Message.objects.filter(customer=bob, status="sent").count() == 2,
        "both nurture messages are sent",
    )
    nudge = Message.objects.get(idempotency_key=step_run_key(enrollment.pk, "nudge"))
    assert [(m["id"], m["title"], m["cta_url"]) for m in inbox(bob.pk)] == [
        (nudge.pk, "Finish setting up", "/onboarding")
    ]
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.current_step) == ("waiting", "pause")

    # when: he completes the milestone (late)
    send(task_done("bob"))

    # then: the rescue ends at once, and the late achievement starts the welcome journey
    wait_for(lambda: len(smtp_server.messages) == 2, "the welcome email arrives")
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason, enrollment.next_run_at) == (
        "exited",
        "exit: milestone_achieved activated",
        None,
    )
    assert sorted(MilestoneOutcome.objects.values_list("kind", "is_late")) == [
        ("achieved", True),
        ("missed", False),
    ]
    assert smtp_server.messages[1]["Subject"] == "Nice work, Bob"
    assert sorted(Enrollment.objects.values_list("journey__key", "state")) == [
        ("rescue", "exited"),
        ("welcome", "waiting"),
    ]
    assert worker == []


# --- Holdout, split, re-entry ---------------------------------------------------------------


def held_out_key(held: int, treated: int) -> str:
    """A journey key whose 50 % control group holds ``held`` and not ``treated`` (the
    control group is at most half of a journey's entrants)."""
    return next(
        key
        for key in (f"welcome-{n}" for n in range(256))
        if is_holdout(key, held, 50.0) and not is_holdout(key, treated, 50.0)
    )


def test_a_held_out_customer_receives_nothing_while_the_others_get_the_journey(
    activated: None,
    worker: list[str],
    smtp_server: RecordingSmtpHandler,
    send: Callable[..., None],
) -> None:
    # given: a journey whose control group holds carol but not dan
    send(signup("carol", "Carol"), signup("dan", "Dan"))
    carol, dan = customer("carol"), customer("dan")
    key = held_out_key(carol.pk, dan.pk)
    live(key, ACHIEVED, WELCOME, holdout_percent=50)

    # when: both achieve the milestone
    send(task_done("carol"), task_done("carol"), task_done("dan"), task_done("dan"))

    # then: dan's journey runs to its wait; carol is enrolled as control and gets nothing
    def states() -> list[tuple[str | None, str]]:
        return sorted(Enrollment.objects.values_list("customer__external_id", "state"))

    wait_for(lambda: states() == [("carol", "holdout"), ("dan", "waiting")], "both are enrolled")
    wait_for(lambda: len(smtp_server.messages) == 1, "dan's email arrives")
    assert smtp_server.recipients == [["dan@example.com"]]
    assert Message.objects.filter(customer=carol).count() == 0
    assert StepRun.objects.filter(enrollment__customer=carol).count() == 0
    assert inbox(carol.pk) == []
    assert Message.objects.filter(customer=dan).count() == 2
    assert worker == []


def test_re_entry_holds_and_the_split_gives_a_customer_the_same_variant_every_time(
    activated: None,
    worker: list[str],
    send: Callable[..., None],
) -> None:
    # given: two journeys on the same event, one entered once, one again after 7 days
    exported = {"kind": "event", "event": "Report Exported"}
    tips: list[dict[str, Any]] = [
        TONE,
        {"key": "tip-a", "type": "send", "templates": ["tips-in-app-a"], "next": "done"},
        {"key": "tip-b", "type": "send", "templates": ["tips-in-app-b"], "next": "done"},
        {"key": "done", "type": "exit"},
    ]
    once = live(
        "export-once",
        exported,
        [
            {"key": "thanks", "type": "send", "templates": ["export-in-app"], "next": "done"},
            {"key": "done", "type": "exit"},
        ],
    )
    weekly = live("export-weekly", exported, tips, reentry="after_days", reentry_days=7)
    users = ["erin", "finn", "gia", "hal"]
    send(*[signup(user, user.title()) for user in users])
    ids = {user: customer(user).pk for user in users}

    def export() -> None:
        send(*[{"type": "track", "userId": user, "event": "Report Exported"} for user in users])

    def sent(journey: Journey) -> int:
        return Message.objects.filter(journey_key=journey.key, status="sent").count()

    # when: everyone exports, twice in a row
    export()
    wait_for(lambda: sent(once) == 4 and sent(weekly) == 4, "the first round is sent")
    export()

    # then: nobody enters again (entry is decided at ingest, before this returns)
    assert Enrollment.objects.count() == 8

    # when: a week later (their entries moved back 8 days), on a new version of the weekly
    # journey, everyone exports again
    Enrollment.objects.update(entered_at=timezone.now() - 8 * DAY)
    journey_save(key=weekly.key, priority=5)
    second = journey_go_live(journey_id=weekly.pk)
    export()

    # then: only the weekly journey lets them in again, and each customer gets the variant
    # they got the first time: the one the split's hash gives them
    wait_for(lambda: sent(weekly) == 8, "the second round is sent")
    rows = Enrollment.objects.order_by("pk").values_list(
        "journey__key", "customer_id", "version__number", "state", "variants"
    )
    expected_once: list[tuple[str, int, int, str, dict[str, str]]] = [
        ("export-once", ids[u], 1, "completed", {}) for u in users
    ]
    expected_weekly = [
        ("export-weekly", ids[u], number, "completed", {"tone": variant_of(weekly.key, ids[u])})
        for number in (1, second.number)
        for u in users
    ]
    assert sorted(rows) == sorted(expected_once + expected_weekly)
    assert second.number == 2
    for user in users:
        tip = f"tip-{variant_of(weekly.key, ids[user])}"
        assert sorted(
            Message.objects.filter(customer_id=ids[user], journey_key=weekly.key).values_list(
                "idempotency_key", flat=True
            )
        ) == sorted(
            step_run_key(pk, tip)
            for pk in Enrollment.objects.filter(journey=weekly, customer_id=ids[user]).values_list(
                "pk", flat=True
            )
        )
    assert sent(once) == 4
    assert worker == []
