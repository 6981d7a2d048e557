"""Email through Django's email backends, against a real SMTP server on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend

from messaging.channels.base import PermanentError, Sent, TransientError
from messaging.channels.email import EmailBackend, message_id_make
from tests.messaging.channels.conftest import RecordingSmtpHandler
from tests.messaging.channels.messages import outgoing

UNSUBSCRIBE = "<https://milepost.example.com/u/abc>, <mailto:unsubscribe@example.com?subject=abc>"
CONTENT = {"subject": "You did it", "text": "Three reports!", "html": "<p>Three reports!</p>"}
HEADERS = {"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


@pytest.fixture(autouse=True)
def _from_address(settings: Any) -> None:
    settings.MESSAGING_EMAIL_FROM = "Milepost <news@mail.example.com>"


def test_it_sends_subject_text_html_and_the_unsubscribe_headers(
    smtp_server: RecordingSmtpHandler,
) -> None:
    # when
    sent = EmailBackend().send(outgoing(content=CONTENT, headers=HEADERS))

    # then
    assert sent == Sent(provider_id="<msg-7@mail.example.com>")
    assert smtp_server.recipients == [["ada@example.com"]]
    (received,) = smtp_server.messages
    assert received["Subject"] == "You did it"
    assert received["From"] == "Milepost <news@mail.example.com>"
    assert received["To"] == "ada@example.com"
    assert received["Message-ID"] == "<msg-7@mail.example.com>"
    assert received["List-Unsubscribe"] == UNSUBSCRIBE
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received.get_content_type() == "multipart/alternative"
    text, html = received.iter_parts()
    assert (text.get_content_type(), text.get_content()) == ("text/plain", "Three reports!")
    assert (html.get_content_type(), html.get_content()) == ("text/html", "<p>Three reports!</p>")


def test_a_message_without_html_is_plain_text(smtp_server: RecordingSmtpHandler) -> None:
    EmailBackend().send(outgoing(content={"subject": "Hi", "text": "Plain."}))

    (received,) = smtp_server.messages
    assert received.get_content_type() == "text/plain"
    assert received.get_content() == "Plain.\r\n"  # as on the wire: SMTP lines end in CRLF


def test_a_retry_carries_the_same_message_id_whatever_the_caller_put_in_headers(
    smtp_server: RecordingSmtpHandler,
) -> None:
    message = outgoing(content=CONTENT, headers={"message-id": "<other@example.com>"})

    first, second = EmailBackend().send(message), EmailBackend().send(message)

    assert first == second == Sent(provider_id="<msg-7@mail.example.com>")
    assert [m.get_all("Message-ID") for m in smtp_server.messages] == [
        ["<msg-7@mail.example.com>"],
        ["<msg-7@mail.example.com>"],
    ]


def test_a_key_that_is_not_a_message_id_left_part_is_hashed_deterministically() -> None:
    made = message_id_make("journey:4/step 2", from_email="news@mail.example.com")

    assert made == "<34b70aaafd56dabd6d53d7f71a823fbf6fe58008@mail.example.com>"
    assert made == message_id_make("journey:4/step 2", from_email="other@mail.example.com")
    assert made != message_id_make("journey:4/step 3", from_email="news@mail.example.com")


def test_a_recipient_refused_with_550_is_a_permanent_bad_address(
    smtp_server: RecordingSmtpHandler,
) -> None:
    with pytest.raises(PermanentError) as raised:
        EmailBackend().send(outgoing(to="bounce@example.com", content=CONTENT))

    assert raised.value.is_bad_address is True
    assert raised.value.reason == "smtp 550 recipient refused: 5.1.1 No such user here"
    assert smtp_server.messages == []


def test_a_recipient_refused_with_451_is_transient(smtp_server: RecordingSmtpHandler) -> None:
    with pytest.raises(TransientError) as raised:
        EmailBackend().send(outgoing(to="busy@example.com", content=CONTENT))

    assert raised.value.reason == "smtp 451 recipient refused: 4.3.0 Mailbox busy, try again later"
    assert raised.value.retry_after is None
    assert smtp_server.messages == []


def test_a_refused_connection_is_transient(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 1  # nothing listens on port 1

    with pytest.raises(TransientError) as raised:
        EmailBackend().send(outgoing(content=CONTENT))

    assert raised.value.reason.startswith("smtp ConnectionRefusedError")


def test_a_server_that_never_greets_is_a_transient_timeout(settings: Any, silent_port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", silent_port, 0.2

    with pytest.raises(TransientError) as raised:
        EmailBackend().send(outgoing(content=CONTENT))

    assert raised.value.reason == (
        "smtp SMTPServerDisconnected: Connection unexpectedly closed: timed out"
    )


def test_it_works_through_any_django_email_backend(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    sent = EmailBackend().send(outgoing(content=CONTENT, headers=HEADERS))

    (email,) = mail.outbox
    assert sent == Sent(provider_id="<msg-7@mail.example.com>")
    assert email.extra_headers == {**HEADERS, "Message-ID": "<msg-7@mail.example.com>"}
    assert email.alternatives == [("<p>Three reports!</p>", "text/html")]


def test_without_a_from_address_it_is_not_configured(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MESSAGING_EMAIL_FROM = ""

    with pytest.raises(PermanentError) as raised:
        EmailBackend().send(outgoing(content=CONTENT))

    assert raised.value.reason == "not configured: MESSAGING_EMAIL_FROM"
    assert mail.outbox == []


def test_a_header_with_a_newline_is_refused_before_sending(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    with pytest.raises(PermanentError) as raised:
        EmailBackend().send(outgoing(content={**CONTENT, "subject": "Hi\nBcc: x@example.com"}))

    assert raised.value.reason.startswith("bad header: ")
    assert mail.outbox == []


# django-anymail is not a dependency: its exceptions are recognised by class name.
class AnymailError(Exception):
    def __init__(self, message: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AnymailAPIError(AnymailError):
    pass


class AnymailRecipientsRefused(AnymailError):
    pass


class RaisingEmailBackend(BaseEmailBackend):
    error: Exception = AnymailError()

    def send_messages(self, email_messages: Any) -> int:
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected", "is_bad_address"),
    [
        (AnymailRecipientsRefused("all refused"), PermanentError, True),
        (AnymailAPIError("bad request", status_code=400), PermanentError, False),
        (AnymailAPIError("throttled", status_code=429), TransientError, None),
        (AnymailAPIError("unavailable", status_code=503), TransientError, None),
        (AnymailAPIError("connection reset"), TransientError, None),
        (AnymailError("unsupported feature"), PermanentError, False),
    ],
)
def test_anymail_errors_are_classified_by_kind_and_status(
    settings: Any, error: Exception, expected: type[Exception], is_bad_address: bool | None
) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.RaisingEmailBackend"
    RaisingEmailBackend.error = error

    with pytest.raises(expected) as raised:
        EmailBackend().send(outgoing(content=CONTENT))

    assert getattr(raised.value, "is_bad_address", None) == is_bad_address
    assert raised.value.reason == f"{type(error).__name__}: {error}"  # type: ignore[attr-defined]


def test_an_unknown_exception_from_an_email_backend_propagates(settings: Any) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.RaisingEmailBackend"
    RaisingEmailBackend.error = KeyError("bug")

    with pytest.raises(KeyError):
        EmailBackend().send(outgoing(content=CONTENT))
