"""Sending inline: a worker that just decided a few messages sends them itself after commit,
unless the channel is rate limited or its provider was slow lately; the rest, and anything
that fails here, goes to the channel's send task. Still claim → send → record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail

from customers.models import Customer
from messaging import sending
from messaging.models import Message, Template
from messaging.services import SendRequest, messages_request
from messaging.tasks import email_send_task
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_slow_channels() -> Iterator[None]:
    sending.inline_forget()
    yield
    sending.inline_forget()


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Message ids handed to the email send task (which does not run)."""
    calls: list[list[int]] = []
    monkeypatch.setattr(email_send_task, "delay", lambda ids: calls.append(list(ids)))
    return calls


def ask(customers: list[Customer], *, send_here: bool, capture: Any) -> list[int]:
    requests = [SendRequest(f"k{c.pk}", c.pk, ("tips-email",)) for c in customers]
    with capture(execute=True):
        return messages_request(requests, send_here=send_here)


def statuses(ids: list[int]) -> list[str]:
    found = dict(Message.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [found[pk] for pk in ids]


def test_send_here_sends_after_commit_without_a_task(
    templates: dict[str, Template],
    customer: Customer,
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ids = ask([customer], send_here=True, capture=django_capture_on_commit_callbacks)

    assert statuses(ids) == ["sent"]
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    assert handed == []


def test_without_send_here_the_task_sends(
    templates: dict[str, Template],
    customer: Customer,
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ids = ask([customer], send_here=False, capture=django_capture_on_commit_callbacks)

    assert statuses(ids) == ["queued"]
    assert handed == [ids]
    assert mail.outbox == []


def test_chunks_are_sent_while_the_time_budget_lasts(
    templates: dict[str, Template],
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.MESSAGING_SEND_INLINE_MAX = 2
    customers = [CustomerFactory(email=f"c{n}@example.com", region="US") for n in range(5)]

    ids = ask(customers, send_here=True, capture=django_capture_on_commit_callbacks)

    assert statuses(ids) == ["sent"] * 5
    assert handed == []


def test_past_the_time_budget_the_rest_goes_to_the_task(
    templates: dict[str, Template],
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.MESSAGING_SEND_INLINE_MAX = 2
    settings.MESSAGING_SEND_INLINE_SECONDS = 0.0  # one chunk, then the budget is spent
    customers = [CustomerFactory(email=f"c{n}@example.com", region="US") for n in range(3)]

    ids = ask(customers, send_here=True, capture=django_capture_on_commit_callbacks)

    assert statuses(ids) == ["sent", "sent", "queued"]
    assert handed == [ids[2:]]


def test_a_rate_limited_channel_is_paced_by_its_queue(
    templates: dict[str, Template],
    customer: Customer,
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.MESSAGING_RATE_LIMITS = {"email": 10.0}

    ids = ask([customer], send_here=True, capture=django_capture_on_commit_callbacks)

    assert statuses(ids) == ["queued"]
    assert handed == [ids]


def test_a_slow_provider_sends_through_its_queue_from_then_on(
    templates: dict[str, Template],
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.MESSAGING_SEND_INLINE_SLOW_SECONDS = 0.0  # every send counts as slow
    first, second = (CustomerFactory(email=f"c{n}@example.com", region="US") for n in range(2))

    sent = ask([first], send_here=True, capture=django_capture_on_commit_callbacks)
    later = ask([second], send_here=True, capture=django_capture_on_commit_callbacks)

    assert statuses(sent + later) == ["sent", "queued"]
    assert handed == [later]


def test_an_error_sending_inline_leaves_the_messages_to_the_task(
    templates: dict[str, Template],
    customer: Customer,
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(channel: str, ids: list[int]) -> sending.SendSummary:
        raise RuntimeError("database went away")

    monkeypatch.setattr(sending, "messages_send", broken)

    ids = ask([customer], send_here=True, capture=django_capture_on_commit_callbacks)

    assert statuses(ids) == ["queued"]
    assert handed == [ids]
    assert "sending 1 email messages inline failed" in caplog.text


def test_in_app_messages_are_neither_sent_inline_nor_handed_on(
    templates: dict[str, Template],
    customer: Customer,
    handed: list[list[int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    request = SendRequest("inbox", customer.pk, ("tips-in_app",))
    with django_capture_on_commit_callbacks(execute=True):
        (pk,) = messages_request([request], send_here=True)

    assert statuses([pk]) == ["sent"]  # stored is sent, for the inbox
    assert handed == []
