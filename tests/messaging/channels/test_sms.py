"""SMS through a Twilio-style REST API, against a local recording HTTP server."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from messaging.channels.base import PermanentError, Sent, TransientError
from messaging.channels.sms import SmsBackend
from tests.messaging.channels.conftest import RecordingServer, Reply
from tests.messaging.channels.messages import outgoing

MESSAGES_PATH = "/2010-04-01/Accounts/AC0123/Messages.json"
SERVICE_SID = "MG" + "0123456789abcdef" * 2


@pytest.fixture(autouse=True)
def _provider(settings: Any, http_server: RecordingServer) -> None:
    settings.MESSAGING_SMS_BASE_URL = http_server.url + "/"
    settings.MESSAGING_SMS_ACCOUNT = "AC0123"
    settings.MESSAGING_SMS_TOKEN = "token-xyz"
    settings.MESSAGING_SMS_FROM = "+15005550006"


def sms(**fields: Any) -> Any:
    return outgoing(channel="sms", to="+14155550100", content={"body": "Hi Ada"}, **fields)


def twilio_error(status: int, code: int, message: str, **headers: str) -> Reply:
    body = {"code": code, "message": message, "status": status}
    return Reply(status, body, headers)


def test_it_posts_the_form_with_basic_auth_and_returns_the_sid(
    http_server: RecordingServer,
) -> None:
    http_server.reply(MESSAGES_PATH, Reply(201, {"sid": "SM42", "status": "queued"}))

    sent = SmsBackend().send(sms())

    assert sent == Sent(provider_id="SM42")
    (request,) = http_server.requests
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    assert request.form() == {"To": "+14155550100", "From": "+15005550006", "Body": "Hi Ada"}
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    credentials = base64.b64encode(b"AC0123:token-xyz").decode()
    assert request.headers["authorization"] == f"Basic {credentials}"


def test_a_messaging_service_sid_is_sent_instead_of_from(
    settings: Any, http_server: RecordingServer
) -> None:
    settings.MESSAGING_SMS_FROM = SERVICE_SID
    http_server.reply(MESSAGES_PATH, Reply(201, {"sid": "SM43"}))

    SmsBackend().send(sms())

    (request,) = http_server.requests
    assert request.form() == {
        "To": "+14155550100",
        "MessagingServiceSid": SERVICE_SID,
        "Body": "Hi Ada",
    }


def test_429_is_transient_and_honours_retry_after(http_server: RecordingServer) -> None:
    http_server.reply(
        MESSAGES_PATH, twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "7"})
    )

    with pytest.raises(TransientError) as raised:
        SmsBackend().send(sms())

    assert raised.value.retry_after == 7.0
    assert raised.value.reason == "sms 429: 20429 Too Many Requests"


def test_500_is_transient(http_server: RecordingServer) -> None:
    http_server.reply(MESSAGES_PATH, Reply(500, b"<html>oops</html>"))

    with pytest.raises(TransientError) as raised:
        SmsBackend().send(sms())

    assert (raised.value.reason, raised.value.retry_after) == ("sms 500:", None)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (21211, "The 'To' number +1415555 is not a valid phone number."),
        (21610, "Attempt to send to unsubscribed recipient"),
        (21614, "'To' number is not a valid mobile number"),
    ],
)
def test_an_invalid_or_unsubscribed_number_is_a_permanent_bad_address(
    http_server: RecordingServer, code: int, message: str
) -> None:
    http_server.reply(MESSAGES_PATH, twilio_error(400, code, message))

    with pytest.raises(PermanentError) as raised:
        SmsBackend().send(sms())

    assert raised.value.is_bad_address is True
    assert raised.value.reason == f"sms 400: {code} {message}"


def test_another_400_is_permanent_but_not_the_numbers_fault(http_server: RecordingServer) -> None:
    http_server.reply(MESSAGES_PATH, twilio_error(400, 21602, "Message body is required."))

    with pytest.raises(PermanentError) as raised:
        SmsBackend().send(sms())

    assert raised.value.is_bad_address is False
    assert raised.value.reason == "sms 400: 21602 Message body is required."


def test_wrong_credentials_are_permanent(http_server: RecordingServer) -> None:
    http_server.reply(MESSAGES_PATH, twilio_error(401, 20003, "Authenticate"))

    with pytest.raises(PermanentError) as raised:
        SmsBackend().send(sms())

    assert (raised.value.reason, raised.value.is_bad_address) == (
        "sms 401: 20003 Authenticate",
        False,
    )


def test_a_refused_connection_is_transient(settings: Any) -> None:
    settings.MESSAGING_SMS_BASE_URL = "http://127.0.0.1:1"

    with pytest.raises(TransientError) as raised:
        SmsBackend().send(sms())

    assert raised.value.reason.startswith("ConnectError: ")


def test_a_provider_that_never_answers_is_a_transient_timeout(
    settings: Any, silent_port: int
) -> None:
    settings.MESSAGING_SMS_BASE_URL = f"http://127.0.0.1:{silent_port}"
    settings.MESSAGING_HTTP_TIMEOUT_SECONDS = 0.2

    with pytest.raises(TransientError) as raised:
        SmsBackend().send(sms())

    assert raised.value.reason == "ReadTimeout: timed out"


def test_without_credentials_it_is_not_configured_and_sends_nothing(
    settings: Any, http_server: RecordingServer
) -> None:
    settings.MESSAGING_SMS_ACCOUNT = settings.MESSAGING_SMS_TOKEN = ""

    with pytest.raises(PermanentError) as raised:
        SmsBackend().send(sms())

    assert raised.value.reason == "not configured: MESSAGING_SMS_ACCOUNT, MESSAGING_SMS_TOKEN"
    assert http_server.requests == []
