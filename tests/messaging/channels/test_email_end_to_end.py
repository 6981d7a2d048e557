"""From a send request to a real SMTP server: the policy lets it through, the template is
rendered with tracked links and the one-click unsubscribe headers, the SMTP backend delivers,
and the links and the unsubscribe endpoint work from what was received."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client

from consent.models import Subscription
from customers.models import Customer
from messaging.models import Message, Template
from messaging.sending import messages_send
from messaging.services import SendRequest, messages_request
from tests.messaging.channels.conftest import RecordingSmtpHandler

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


def test_an_email_arrives_with_its_headers_tracked_links_and_a_working_unsubscribe(
    templates: dict[str, Template],
    customer: Customer,
    smtp_server: RecordingSmtpHandler,
    client: Client,
    settings: Any,
) -> None:
    settings.PUBLIC_BASE_URL = "http://testserver"
    settings.MESSAGING_EMAIL_FROM = "Milepost <hello@milepost.example>"
    (pk,) = messages_request([SendRequest("e2e-1", customer.pk, ("tips-email",))], now=NOON)

    summary = messages_send("email", [pk])

    assert (summary.sent, smtp_server.recipients) == (1, [["ada@example.com"]])
    (received,) = smtp_server.messages
    assert received["Subject"] == "Welcome, Ada"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = "".join(str(received["List-Unsubscribe"]).split()).strip("<>")
    assert unsubscribe.startswith("http://testserver/c/u/")
    message = Message.objects.get(pk=pk)
    assert str(received["Message-ID"]) == message.provider_id
    html = received.get_body(("html",)).get_content()
    text = received.get_body(("plain",)).get_content()
    assert "Hi Ada" in html
    assert "Hi Ada" in text
    tracked = re.findall(r'href="(http://testserver/m/c/[^"]+)"', html)
    assert len(tracked) == 1
    assert "http://testserver/m/o/" in html

    click = client.get(tracked[0].removeprefix("http://testserver"))
    assert (click.status_code, click["Location"]) == (302, "https://example.com/start?a=1&b=2")

    one_click = client.post(
        unsubscribe.removeprefix("http://testserver"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert one_click.status_code == 200
    assert list(Subscription.objects.values_list("channel", "topic__key", "status")) == [
        ("email", "tips", "opted_out")
    ]
    again = messages_request([SendRequest("e2e-2", customer.pk, ("tips-email",))], now=NOON)
    assert Message.objects.get(pk=again[0]).reason == "no_consent"
