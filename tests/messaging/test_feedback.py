"""What comes back: tracking links, the open pixel, signed provider webhooks, SMS keywords."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest
from django.test import Client

from consent.models import ConsentRecord, Subscription, Suppression
from customers.models import Customer, Event
from messaging.channels.webhook import signature_make
from messaging.models import Message, Template
from messaging.services import SendRequest, messages_request

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
SECRET = "inbound-secret"


@pytest.fixture
def email(templates: dict[str, Template], customer: Customer, settings: Any) -> Message:
    settings.PUBLIC_BASE_URL = "http://testserver"
    settings.MESSAGING_INBOUND_WEBHOOK_SECRET = SECRET
    (pk,) = messages_request([SendRequest("k1", customer.pk, ("tips-email",))], now=NOON)
    Message.objects.filter(pk=pk).update(status="sent", provider_id="esp-1")
    return Message.objects.get(pk=pk)


def tracked(message: Message, marker: str, end: str) -> str:
    """The path of the first tracked URL of ``marker`` kind in the rendered html."""
    after = message.rendered["html"].split(f"http://testserver/{marker}")[1]
    return f"/{marker}" + after.split(end)[0]


def test_a_click_redirects_to_the_messages_own_url_and_goes_on_the_timeline(
    email: Message, client: Client
) -> None:
    path = tracked(email, "m/c/", '"')

    response = client.get(path)

    assert (response.status_code, response["Location"]) == (
        302,
        "https://example.com/start?a=1&b=2",
    )
    email.refresh_from_db()
    assert email.status == "clicked"
    event = Event.objects.get()
    assert (event.name, event.customer_id, event.properties["url"]) == (
        "Email Link Clicked",
        email.customer_id,
        "https://example.com/start?a=1&b=2",
    )


def test_a_tampered_click_token_never_redirects(email: Message, client: Client) -> None:
    path = tracked(email, "m/c/", '"')

    response = client.get(path[:-3] + "xyz")

    assert response.status_code == 404
    assert not response.has_header("Location")
    assert Event.objects.count() == 0


def test_the_open_pixel_records_one_open(email: Message, client: Client) -> None:
    path = "/" + email.rendered["html"].split("http://testserver/")[-1].split('"')[0]

    first, second = client.get(path), client.get(path)

    assert (first.status_code, first["Content-Type"], second.status_code) == (200, "image/gif", 200)
    email.refresh_from_db()
    assert email.status == "opened"
    assert list(Event.objects.values_list("name", flat=True)) == ["Email Opened"]


def post_signed(client: Client, payload: Any, *, secret: str = SECRET) -> Any:
    body = orjson.dumps(payload)
    header = signature_make(secret, int(time.time()), body)
    return client.post(
        "/m/webhooks/email",
        data=body,
        content_type="application/json",
        HTTP_MILEPOST_SIGNATURE=header,
    )


def test_a_signed_hard_bounce_suppresses_the_address_and_reports_bad_items(
    email: Message, client: Client
) -> None:
    response = post_signed(
        client,
        {
            "events": [
                {"provider_id": "esp-1", "event": "bounced", "detail": "550 no such user"},
                {"provider_id": "nope", "event": "delivered"},
                {"provider_id": "esp-1", "event": "exploded"},
            ]
        },
    )

    assert response.status_code == 200
    assert response.json() == {
        "accepted": 1,
        "applied": 1,
        "errors": [
            {"index": 1, "error": "no such message"},
            {"index": 2, "error": "unknown event 'exploded'"},
        ],
    }
    email.refresh_from_db()
    assert (email.status, email.error) == ("bounced", "550 no such user")
    assert list(Suppression.objects.values_list("kind", "address", "reason")) == [
        ("email", "ada@example.com", "hard_bounce")
    ]
    assert list(Event.objects.values_list("name", flat=True)) == ["Email Bounced"]


def test_a_complaint_suppresses_and_opts_the_customer_out_of_marketing_email(
    email: Message, client: Client
) -> None:
    post_signed(client, {"events": [{"message_id": email.pk, "event": "complained"}]})

    assert list(Suppression.objects.values_list("reason", flat=True)) == ["complaint"]
    assert list(Subscription.objects.values_list("channel", "status")) == [("email", "opted_out")]
    assert list(ConsentRecord.objects.values_list("source", flat=True)) == ["complaint"]


def test_an_unsigned_or_wrongly_signed_webhook_changes_nothing(
    email: Message, client: Client
) -> None:
    payload = {"events": [{"provider_id": "esp-1", "event": "bounced"}]}

    unsigned = client.post("/m/webhooks/email", data=payload, content_type="application/json")
    wrong = post_signed(client, payload, secret="guess")

    assert (unsigned.status_code, wrong.status_code) == (401, 401)
    email.refresh_from_db()
    assert email.status == "sent"
    assert Suppression.objects.count() == 0


def test_a_later_delivery_report_never_moves_an_opened_message_back(
    email: Message, client: Client
) -> None:
    post_signed(client, {"events": [{"provider_id": "esp-1", "event": "opened"}]})
    post_signed(client, {"events": [{"provider_id": "esp-1", "event": "delivered"}]})

    email.refresh_from_db()
    assert (email.status, email.delivered_at is not None, email.opened_at is not None) == (
        "opened",
        True,
        True,
    )


def twilio(client: Client, path: str, params: dict[str, str], token: str) -> Any:
    url = "http://testserver" + path
    signed = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    signature = base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest())
    return client.post(path, data=params, HTTP_X_TWILIO_SIGNATURE=signature.decode())


def test_an_inbound_stop_opts_out_and_is_answered_with_twiml(
    topics: Any, customer: Customer, client: Client, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "http://testserver"
    settings.MESSAGING_SMS_TOKEN = "auth-token"
    params = {"From": "+14155550100", "Body": "Stop", "MessageSid": "SM9"}

    response = twilio(client, "/m/webhooks/sms/inbound", params, "auth-token")
    forged = twilio(client, "/m/webhooks/sms/inbound", params, "other-token")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml"
    assert b"<Message>You are unsubscribed" in response.content
    assert forged.status_code == 401
    assert list(Subscription.objects.values_list("channel", "status")) == [("sms", "opted_out")]


def test_an_sms_status_callback_marks_delivery_and_a_dead_number_bounces(
    templates: dict[str, Template], customer: Customer, client: Client, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "http://testserver"
    settings.MESSAGING_SMS_TOKEN = "auth-token"
    ids = messages_request(
        [SendRequest(k, customer.pk, ("tips-sms",)) for k in ("a", "b")], now=NOON
    )
    Message.objects.filter(pk=ids[0]).update(status="sent", provider_id="SM1")
    Message.objects.filter(pk=ids[1]).update(status="sent", provider_id="SM2")

    ok = twilio(
        client, "/m/webhooks/sms/status", {"MessageSid": "SM1", "MessageStatus": "delivered"},
        "auth-token",
    )  # fmt: skip
    dead = twilio(
        client, "/m/webhooks/sms/status",
        {"MessageSid": "SM2", "MessageStatus": "undelivered", "ErrorCode": "30005"}, "auth-token",
    )  # fmt: skip

    assert (ok.status_code, dead.status_code) == (204, 204)
    assert dict(Message.objects.values_list("provider_id", "status")) == {
        "SM1": "delivered",
        "SM2": "bounced",
    }
    assert list(Suppression.objects.values_list("kind", "reason")) == [("phone", "hard_bounce")]
    assert sorted(Event.objects.values_list("name", flat=True)) == ["SMS Bounced", "SMS Delivered"]
