"""Notify steps and webhooks: team emails and signed webhooks written in the runner's and
the receivers' transactions, sent from an outbox, retried with backoff, idempotent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.core import mail

from consent.models import Topic
from customers.models import Customer
from journeys import notices
from journeys.enrollment import enroll, entries_from_outcomes
from journeys.exits import exits_apply
from journeys.models import Enrollment, Notice, StepRun, Team, WebhookEndpoint
from journeys.notices import endpoint_secret, endpoints_forget, notices_retry, notices_send
from journeys.receivers import on_outcomes_recorded
from journeys.runner import enrollments_advance
from journeys.services import JourneyInvalid, journey_go_live, journey_save
from messaging.channels.registry import backends_reset
from messaging.channels.webhook import signature_verify
from messaging.templating import template_activate, template_save
from milestones.signals import OutcomeRecord
from tests.factories import AccountFactory, CustomerFactory
from tests.messaging.channels.conftest import RecordingServer, Reply, http_server  # noqa: F401

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
MISSED = {"kind": "milestone_missed", "milestone": "activated"}


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> Iterator[None]:
    settings.MESSAGING_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.MESSAGING_WEBHOOK_SECRET = "notify-secret"
    settings.MESSAGING_EMAIL_FROM = "Milepost <hello@milepost.test>"
    settings.JOURNEYS_NOTICE_MAX_ATTEMPTS = 3
    endpoints_forget()
    backends_reset()
    yield
    endpoints_forget()
    backends_reset()


@pytest.fixture
def alert(ready: None) -> None:
    """The email template a notify step sends to the team."""
    template = template_save(
        key="owner-alert", name="Owner alert", channel="email",
        topic=Topic.objects.get(key="tips"), default_locale="en",
        variants={"en": {
            "subject": "{{ customer.external_id }} missed setup",
            "html": "<p>{{ journey.name }}: {{ account.name }} needs a call.</p>",
        }},
    )  # fmt: skip
    template_activate(template_id=template.pk)


def notify_journey(to: str, **fields: Any) -> None:
    steps = [
        {"key": "tell", "type": "notify", "to": to, "template": "owner-alert", "next": "done"},
        {"key": "done", "type": "exit"},
    ]
    journey = journey_save(
        key="owner-heads-up", name="Owner heads-up", trigger=MISSED, steps=steps, **fields
    )
    journey_go_live(journey_id=journey.pk)


def missed(customer: Customer, outcome_id: int = 1) -> OutcomeRecord:
    return OutcomeRecord(
        outcome_id, 1, 1, "activated", "customer", customer.pk, "missed", False, NOW
    )


def test_a_notify_step_emails_the_sales_team_about_the_customer(alert: None) -> None:
    # given
    Team.objects.create(key="sales", name="Sales", email="sales@acme.test")
    notify_journey("sales")
    account = AccountFactory(name="Acme Corp")
    customer = CustomerFactory(external_id="u-1", account=account)
    enroll(entries_from_outcomes([missed(customer)]), now=NOW)

    # when
    enrollments_advance(now=NOW)
    sent = notices_send(now=NOW)

    # then
    enrollment = Enrollment.objects.get()
    notice = Notice.objects.get()
    assert (sent, notice.kind, notice.to, notice.status, notice.attempts) == (
        1, "email", "sales@acme.test", "delivered", 1,
    )  # fmt: skip
    assert [(m.to, m.subject) for m in mail.outbox] == [(["sales@acme.test"], "u-1 missed setup")]
    assert "Owner heads-up: Acme Corp needs a call." in str(mail.outbox[0].body)
    assert (enrollment.state, StepRun.objects.get(step_key="tell").result) == (
        "completed",
        {"to": "sales", "notices": ["sales@acme.test"]},
    )


def test_the_account_owner_is_the_accounts_owner_email_trait(alert: None) -> None:
    notify_journey("account_owner")
    owned = CustomerFactory(account=AccountFactory(traits={"owner_email": "kim@acme.test"}))
    orphan = CustomerFactory(account=None)
    enroll(entries_from_outcomes([missed(owned, 1), missed(orphan, 2)]), now=NOW)

    enrollments_advance(now=NOW)

    assert list(Notice.objects.values_list("to", flat=True)) == ["kim@acme.test"]
    runs = dict(
        StepRun.objects.filter(step_key="tell").values_list("enrollment__customer", "result")
    )
    assert runs[orphan.pk] == {
        "to": "account_owner",
        "notices": [],
        "error": "the customer has no account",
    }
    # an unresolved recipient does not stop the customer's journey
    assert set(Enrollment.objects.values_list("state", flat=True)) == {"completed"}


def test_a_step_run_twice_writes_its_notice_once(alert: None) -> None:
    Team.objects.create(key="support", name="Support", email="help@acme.test")
    notify_journey("support")
    customer = CustomerFactory()
    (enrollment,) = enroll(entries_from_outcomes([missed(customer)]), now=NOW)
    enrollments_advance(now=NOW)

    # when: the same step run again (a redelivered batch)
    Enrollment.objects.filter(pk=enrollment.pk).update(
        state="active", current_step="tell", next_run_at=NOW
    )
    enrollments_advance(now=NOW)

    assert Notice.objects.count() == 1


def test_go_live_refuses_a_missing_team_and_a_notify_template_that_is_not_email(
    alert: None,
) -> None:
    steps = [
        {"key": "tell", "type": "notify", "to": "sales", "template": "setup-help", "next": "done"},
        {"key": "done", "type": "exit"},
    ]
    journey = journey_save(key="bad", name="Bad", trigger=MISSED, steps=steps)

    with pytest.raises(JourneyInvalid) as refused:
        journey_go_live(journey_id=journey.pk)

    assert str(refused.value) == (
        "step 'tell': template 'setup-help' is a sms template; a notify step sends email; "
        "step 'tell': no team 'sales' with an email or webhook is set up"
    )


# --- Webhooks -------------------------------------------------------------------------------


def test_an_outcome_is_posted_signed_to_each_subscribed_endpoint(
    ready: None,
    http_server: RecordingServer,  # noqa: F811
) -> None:
    # given
    endpoint = WebhookEndpoint.objects.create(
        name="CRM", url=f"{http_server.url}/hooks", events=["milestone.missed"]
    )
    WebhookEndpoint.objects.create(
        name="Only wins", url=f"{http_server.url}/wins", events=["milestone.achieved"]
    )
    customer = CustomerFactory(external_id="u-9")

    # when: the signal, twice (the sweep hands outcomes on again)
    on_outcomes_recorded(sender=None, outcomes=[missed(customer, 41)])
    on_outcomes_recorded(sender=None, outcomes=[missed(customer, 41)])
    notices_send()

    # then
    (request,) = http_server.requests
    body = orjson.loads(request.body)
    assert request.path == "/hooks"
    assert request.headers["milepost-idempotency-key"] == f"endpoint:{endpoint.pk}:outcome:41"
    assert signature_verify(
        endpoint_secret(endpoint), request.headers["milepost-signature"], request.body, 60
    )
    assert not signature_verify(
        "notify-secret", request.headers["milepost-signature"], request.body, 60
    )
    assert (body["id"], body["type"], body["data"]) == (
        "outcome:41", "milestone.missed",
        {
            "milestone": "activated", "outcome_id": 41, "unit": "customer",
            "customer": {"id": customer.pk, "external_id": "u-9"}, "is_late": False,
            "occurred_at": NOW.isoformat(),
        },
    )  # fmt: skip


def test_rotating_an_endpoints_secret_changes_it() -> None:
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/in")
    before = endpoint_secret(endpoint)

    endpoint.secret_version += 1

    assert before.startswith("whsec_")
    assert endpoint_secret(endpoint) != before


def test_journey_entered_and_converted_are_posted(
    ready: None,
    http_server: RecordingServer,  # noqa: F811
) -> None:
    WebhookEndpoint.objects.create(name="All", url=f"{http_server.url}/all")
    journey = journey_save(
        key="setup-nudge", name="Setup nudge", trigger=MISSED,
        steps=[
            {"key": "wait", "type": "wait", "duration": {"days": 3}, "next": "done"},
            {"key": "done", "type": "exit"},
        ],
        goal={"milestone": "activated", "within": {"days": 14}},
    )  # fmt: skip
    journey_go_live(journey_id=journey.pk)
    customer = CustomerFactory(external_id="u-5")
    (enrollment,) = enroll(entries_from_outcomes([missed(customer)]), now=NOW)
    achieved = OutcomeRecord(
        2, 1, 1, "activated", "customer", customer.pk, "achieved", False, NOW + dt.timedelta(days=1)
    )
    exits_apply(entries_from_outcomes([achieved]))

    notices_send()

    bodies = [orjson.loads(r.body) for r in http_server.requests]
    assert [(b["id"], b["type"]) for b in bodies] == [
        (f"enrollment:{enrollment.pk}:entered", "journey.entered"),
        (f"enrollment:{enrollment.pk}:converted", "journey.converted"),
    ]
    assert bodies[1]["data"] == {
        "journey": "setup-nudge", "version": 1, "enrollment_id": enrollment.pk,
        "customer": {"id": customer.pk, "external_id": "u-5"}, "state": "active",
        "entered_at": NOW.isoformat(), "converted_at": (NOW + dt.timedelta(days=1)).isoformat(),
        "goal": "activated",
    }  # fmt: skip


def test_no_endpoint_means_no_notices(ready: None) -> None:
    on_outcomes_recorded(sender=None, outcomes=[missed(CustomerFactory())])

    assert Notice.objects.count() == 0


def webhook_notice(http_server: RecordingServer) -> Notice:  # noqa: F811
    endpoint = WebhookEndpoint.objects.create(name="CRM", url=f"{http_server.url}/hooks")
    on_outcomes_recorded(sender=None, outcomes=[missed(CustomerFactory(), 7)])
    return Notice.objects.get(endpoint=endpoint)


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(
    ready: None,
    http_server: RecordingServer,  # noqa: F811
) -> None:
    http_server.reply("/hooks", Reply(503))
    notice = webhook_notice(http_server)
    Notice.objects.filter(pk=notice.pk).update(next_attempt_at=NOW)

    notices_send(now=NOW)

    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.last_error) == ("pending", 1, "webhook 503")
    assert NOW <= notice.next_attempt_at <= NOW + dt.timedelta(seconds=30)
    assert notices_send(now=NOW - dt.timedelta(seconds=1)) == 0  # not due before its time
    later = NOW + dt.timedelta(hours=2)
    notices_send(now=later)
    notices_send(now=later + dt.timedelta(hours=2))
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, len(http_server.requests)) == ("failed", 3, 3)


def test_a_refusing_receiver_fails_at_once_and_an_admin_retry_sends_again(
    ready: None,
    http_server: RecordingServer,  # noqa: F811
) -> None:
    http_server.reply("/hooks", Reply(400), Reply(200))
    notice = webhook_notice(http_server)

    notices_send()
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.last_error) == ("failed", 1, "webhook 400")

    assert notices_retry([notice.pk]) == 1
    notices_send()
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, len(http_server.requests)) == ("delivered", 1, 2)


def test_a_notice_claimed_by_a_worker_that_died_is_sent_again_later(
    ready: None,
    http_server: RecordingServer,  # noqa: F811
) -> None:
    notice = webhook_notice(http_server)
    Notice.objects.filter(pk=notice.pk).update(status="sending", claimed_at=NOW, attempts=1)

    assert notices_send(now=NOW + dt.timedelta(seconds=60)) == 0  # still within the claim
    assert notices_send(now=NOW + dt.timedelta(seconds=301)) == 1

    notice.refresh_from_db()
    assert (notice.status, notice.attempts, len(http_server.requests)) == ("delivered", 2, 1)


def test_a_slow_worker_whose_claim_was_taken_over_does_not_overwrite_the_new_claim(
    ready: None,
    http_server: RecordingServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: worker A claims the notice at NOW and is still sending when its claim goes stale
    notice = webhook_notice(http_server)
    Notice.objects.filter(pk=notice.pk).update(next_attempt_at=NOW)
    later = NOW + dt.timedelta(seconds=301)
    taken: list[Notice] = []

    def slow_send(claimed: Notice, backends: Any) -> Exception | None:
        taken.extend(notices._claim(later, 10))  # meanwhile worker B takes the claim over
        return TimeoutError("worker A's request timed out")

    monkeypatch.setattr(notices, "_send", slow_send)

    # when: worker A records its failure while B is still sending
    assert notices_send(now=NOW) == 1

    # then: B's claim stands, and B's result is the one recorded
    notice.refresh_from_db()
    assert (notice.status, notice.claimed_at, notice.attempts) == ("sending", later, 2)
    notices._record(taken[0], None, later)
    notice.refresh_from_db()
    assert (notice.status, notice.claimed_at, notice.last_error) == ("delivered", None, "")


def test_a_team_webhook_is_signed_with_the_webhook_secret(
    alert: None,
    http_server: RecordingServer,  # noqa: F811
) -> None:
    Team.objects.create(key="sales", name="Sales", webhook_url=f"{http_server.url}/sales")
    notify_journey("sales")
    customer = CustomerFactory(external_id="u-3")
    enroll(entries_from_outcomes([missed(customer)]), now=NOW)
    enrollments_advance(now=NOW)

    notices_send(now=NOW)

    (request,) = http_server.requests
    body = orjson.loads(request.body)
    assert signature_verify(
        "notify-secret", request.headers["milepost-signature"], request.body, 10**9
    )
    assert (body["type"], body["data"]["journey"], body["data"]["customer"]["external_id"]) == (
        "journey.notify",
        {"key": "owner-heads-up", "name": "Owner heads-up", "step": "tell"},
        "u-3",
    )
