"""Email through Django's email backends: SMTP by default, console or file in the demo, an ESP
through django-anymail's backends when ``EMAIL_BACKEND`` names one (nothing here imports it).

Content fields: ``subject``, ``text`` and, optionally, ``html`` (sent as the alternative part).
``Outgoing.headers`` go out as given (List-Unsubscribe, List-Unsubscribe-Post, ...). The
Message-ID is built from the idempotency key, so a retry carries the same id and an ESP that
dedupes on it drops the copy; it is also the provider id.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
from email.utils import parseaddr

from django.conf import settings
from django.core import mail
from django.core.mail import BadHeaderError, EmailMultiAlternatives

from messaging.channels.base import Outgoing, PermanentError, SendError, Sent, TransientError
from messaging.channels.http import is_transient_status, settings_require

# A key that is already a valid Message-ID left part (RFC 5322 dot-atom) is used as it is;
# anything else is hashed, so the id stays deterministic either way.
_DOT_ATOM = re.compile(r"[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*")
# Enhanced status codes (RFC 3463) that mean the recipient's address is bad, when a server
# refuses only at DATA time.
_BAD_MAILBOX_CODES = ("5.1.1 ", "5.1.2 ", "5.1.3 ", "5.1.6 ", "5.1.10 ")


class EmailBackend:
    # SMTP itself never dedupes: a resend after an unknown outcome may deliver twice.
    supports_idempotency = False

    def __init__(self) -> None:
        self.from_email: str = settings.MESSAGING_EMAIL_FROM

    def send(self, message: Outgoing) -> Sent:
        settings_require(MESSAGING_EMAIL_FROM=self.from_email)
        message_id = message_id_make(message.idempotency_key, from_email=self.from_email)
        email = email_build(message, from_email=self.from_email, message_id=message_id)
        try:
            sent_count = mail.get_connection(fail_silently=False).send_messages([email])
        except BadHeaderError as exc:
            raise PermanentError(f"bad header: {exc}") from exc
        except Exception as exc:
            error = email_error(exc)
            if error is None:
                raise
            raise error from exc
        if not sent_count:
            raise TransientError("the email backend sent nothing")
        return Sent(provider_id=message_id)


def message_id_make(idempotency_key: str, *, from_email: str) -> str:
    """``<key@domain of From>``; the same key always gives the same Message-ID."""
    domain = parseaddr(from_email)[1].rpartition("@")[2] or "localhost"
    if len(idempotency_key) <= 64 and _DOT_ATOM.fullmatch(idempotency_key):
        left = idempotency_key
    else:
        left = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{left}@{domain}>"


def email_build(message: Outgoing, *, from_email: str, message_id: str) -> EmailMultiAlternatives:
    headers = {k: v for k, v in message.headers.items() if k.lower() != "message-id"}
    headers["Message-ID"] = message_id
    email = EmailMultiAlternatives(
        subject=str(message.content.get("subject", "")),
        body=str(message.content.get("text", "")),
        from_email=from_email,
        to=[message.to],
        headers=headers,
    )
    if html := message.content.get("html"):
        email.attach_alternative(str(html), "text/html")
    return email


def email_error(exc: Exception) -> SendError | None:
    """SMTP: a refused recipient with 5xx is a bad address, 4xx is transient; other replies
    by their code; network errors and timeouts are transient. Anymail's errors by status.
    ``None`` for anything else: a bug, left to propagate."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipients_refused_error(exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _smtp_reply_error(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPException | OSError):  # disconnects, refused, timeouts, TLS
        return TransientError(f"smtp {type(exc).__name__}: {exc}")
    return _anymail_error(exc)


def _recipients_refused_error(exc: smtplib.SMTPRecipientsRefused) -> SendError:
    code, reply = next(iter(exc.recipients.values()), (0, b""))
    reason = f"smtp {code} recipient refused: {_text(reply)}"
    if 500 <= code < 600:
        return PermanentError(reason, is_bad_address=True)
    return TransientError(reason)


def _smtp_reply_error(code: int, reply: bytes | str) -> SendError:
    text = _text(reply)
    reason = f"smtp {code}: {text}"
    if 500 <= code < 600:
        return PermanentError(reason, is_bad_address=text.startswith(_BAD_MAILBOX_CODES))
    return TransientError(reason)


def _anymail_error(exc: Exception) -> SendError | None:
    """django-anymail's exceptions, recognised by class name so that it stays optional."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    reason = f"{type(exc).__name__}: {exc}"
    if "AnymailRecipientsRefused" in names:
        return PermanentError(reason, is_bad_address=True)
    if "AnymailAPIError" in names:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and not is_transient_status(status):
            return PermanentError(reason)
        return TransientError(reason)  # a network error has no status
    if "AnymailError" in names:  # configuration, unsupported feature, invalid address
        return PermanentError(reason)
    return None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
