"""Sending: claim, send, record — once per key; retries, permanent failures, reconciling."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core import mail

from consent.models import Suppression
from customers.models import Customer
from messaging.channels.base import Outgoing, PermanentError, Sent, TransientError
from messaging.models import Message, Template
from messaging.sending import messages_claim, messages_send
from messaging.services import SendRequest, messages_due_process, messages_request

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


class Scripted:
    """A backend that answers from a script and records what it was asked to send."""

    supports_idempotency = False
    script: list[Sent | Exception] = []
    calls: list[Outgoing] = []

    def send(self, message: Outgoing) -> Sent:
        Scripted.calls.append(message)
        result = Scripted.script.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


@pytest.fixture
def scripted(settings: Any) -> type[Scripted]:
    settings.MESSAGING_BACKENDS = {**settings.MESSAGING_BACKENDS, "sms": f"{__name__}.Scripted"}
    Scripted.script, Scripted.calls = [], []
    return Scripted


def queued(customer: Customer, template: str, key: str = "k1") -> Message:
    (pk,) = messages_request([SendRequest(key, customer.pk, (template,))], now=NOON)
    return Message.objects.get(pk=pk)


def test_an_email_goes_out_through_djangos_backend_with_its_headers(
    templates: dict[str, Template], customer: Customer, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    message = queued(customer, "tips-email")

    summary = messages_send("email", [message.pk])

    message.refresh_from_db()
    assert (summary.claimed, summary.sent) == (1, 1)
    assert (message.status, message.attempts, message.provider_id != "") == ("sent", 1, True)
    (sent,) = mail.outbox
    assert (sent.to, sent.subject) == (["ada@example.com"], "Welcome, Ada")
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent.extra_headers["List-Unsubscribe"] == message.rendered["headers"]["List-Unsubscribe"]


def test_a_message_is_claimed_once_however_often_its_task_runs(
    templates: dict[str, Template], customer: Customer, scripted: type[Scripted]
) -> None:
    message = queued(customer, "tips-sms")
    scripted.script = [Sent("SM1")]

    first = messages_send("sms", [message.pk])
    second = messages_send("sms", [message.pk])

    assert (first.sent, second.claimed) == (1, 0)
    assert [c.to for c in scripted.calls] == ["+14155550100"]
    message.refresh_from_db()
    assert (message.status, message.provider_id) == ("sent", "SM1")


def test_a_transient_error_puts_the_message_back_with_a_backoff(
    templates: dict[str, Template], customer: Customer, scripted: type[Scripted]
) -> None:
    message = queued(customer, "tips-sms")
    scripted.script = [TransientError("503 from provider", retry_after=120.0)]

    summary = messages_send("sms", [message.pk], now=NOON)

    message.refresh_from_db()
    assert summary.retrying == 1
    assert (message.status, message.error, message.attempts) == ("queued", "503 from provider", 1)
    assert message.send_after is not None
    assert message.send_after >= message.updated_at + dt.timedelta(seconds=120)
    # Not due yet: a second run claims nothing.
    assert messages_claim("sms", [message.pk], now=NOON + dt.timedelta(seconds=60)) == []


def test_retries_stop_after_the_last_attempt_and_free_the_cap_slot(
    templates: dict[str, Template], customer: Customer, scripted: type[Scripted], settings: Any
) -> None:
    settings.MESSAGING_MAX_ATTEMPTS = 1
    message = queued(customer, "tips-sms")
    scripted.script = [TransientError("timeout")]

    messages_send("sms", [message.pk])

    message.refresh_from_db()
    assert (message.status, message.reason, message.reserved_at) == (
        "failed",
        "retries_exhausted",
        None,
    )


def test_a_bad_address_fails_the_message_and_suppresses_the_address(
    templates: dict[str, Template], customer: Customer, scripted: type[Scripted]
) -> None:
    message = queued(customer, "tips-sms")
    scripted.script = [PermanentError("21211 invalid To", is_bad_address=True)]

    summary = messages_send("sms", [message.pk])

    message.refresh_from_db()
    assert summary.failed == 1
    assert (message.status, message.reason, message.error) == (
        "failed",
        "bad_address",
        "21211 invalid To",
    )
    assert list(Suppression.objects.values_list("kind", "address", "reason")) == [
        ("phone", "+14155550100", "hard_bounce")
    ]
    assert queued(customer, "tips-sms", key="k2").reason == "suppressed_address"


def test_a_provider_refusal_that_is_not_about_the_address_suppresses_nothing(
    templates: dict[str, Template], customer: Customer, scripted: type[Scripted]
) -> None:
    message = queued(customer, "tips-sms")
    scripted.script = [PermanentError("content blocked")]

    messages_send("sms", [message.pk])

    message.refresh_from_db()
    assert (message.status, message.reason) == ("failed", "provider_rejected")
    assert Suppression.objects.count() == 0


def test_a_claim_left_by_a_dead_worker_is_resolved_never_sent_blindly_again(
    templates: dict[str, Template], customer: Customer, settings: Any
) -> None:
    settings.MESSAGING_BACKENDS = {
        **settings.MESSAGING_BACKENDS,
        "push": "messaging.channels.null.NullBackend",  # deduplicates on our key
        "sms": f"{__name__}.Scripted",  # does not
    }
    sms, push = queued(customer, "tips-sms", "a"), queued(customer, "tips-push", "b")
    messages_claim("sms", [sms.pk], now=NOON)
    messages_claim("push", [push.pk], now=NOON)

    early = messages_due_process(
        now=NOON + dt.timedelta(seconds=settings.MESSAGING_SENDING_STALE_SECONDS - 1)
    )
    summary = messages_due_process(now=NOON + dt.timedelta(hours=1))

    sms.refresh_from_db()
    push.refresh_from_db()
    assert (early.reconciled, summary.reconciled) == (0, 2)
    assert (sms.status, sms.reason) == ("unconfirmed", "send_unconfirmed")
    assert push.status == "queued"


def test_a_channel_without_a_backend_fails_its_messages_instead_of_stranding_them(
    templates: dict[str, Template], customer: Customer, settings: Any
) -> None:
    settings.MESSAGING_BACKENDS = {
        k: v for k, v in settings.MESSAGING_BACKENDS.items() if k != "sms"
    }
    message = queued(customer, "tips-sms")

    summary = messages_send("sms", [message.pk])

    message.refresh_from_db()
    assert (summary.claimed, summary.failed) == (1, 1)
    assert (message.status, message.reason) == ("failed", "provider_rejected")
    assert message.error.startswith("not configured")


def test_over_the_providers_rate_the_rest_of_the_batch_waits_without_spending_an_attempt(
    templates: dict[str, Template], customer: Customer, scripted: type[Scripted], settings: Any
) -> None:
    from messaging.channels import ratelimit

    settings.MESSAGING_RATE_LIMITS = {"sms": 0.001}  # one token, then one per ~17 minutes
    ratelimit.local_buckets_reset()
    settings.CELERY_BROKER_URL = "memory://"  # the in-process bucket: no shared state
    messages = [queued(customer, "tips-sms", key=f"k{n}") for n in range(3)]
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(reserved_at=None)
    scripted.script = [Sent("SM1")]

    summary = messages_send("sms", [m.pk for m in messages])

    assert (summary.claimed, summary.sent, summary.retrying) == (3, 1, 2)
    waiting = Message.objects.filter(status="queued").order_by("pk")
    assert [(m.attempts, m.send_after is not None) for m in waiting] == [(0, True), (0, True)]
    ratelimit.local_buckets_reset()


def test_a_queued_message_whose_wake_up_was_lost_is_woken_again_but_not_on_every_tick(
    templates: dict[str, Template], customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import messaging.services as services

    woken: list[list[tuple[str, int]]] = []
    monkeypatch.setattr(services, "_dispatch", lambda rows: woken.append(list(rows)))
    message = queued(customer, "tips-sms")  # decided at NOON, its wake-up then lost

    messages_due_process(now=NOON + dt.timedelta(seconds=29))
    messages_due_process(now=NOON + dt.timedelta(seconds=31))
    messages_due_process(now=NOON + dt.timedelta(seconds=46))
    messages_due_process(now=NOON + dt.timedelta(seconds=62))

    assert woken == [[("sms", message.pk)], [("sms", message.pk)]]
