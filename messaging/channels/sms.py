"""SMS through a Twilio-style REST API: one form POST per message to
``{base_url}/2010-04-01/Accounts/{account}/Messages.json`` with HTTP Basic auth.

Content field: ``body``. ``MESSAGING_SMS_FROM`` is a number or sender id, or a Messaging
Service SID (``MG`` + 32 hex digits), which is sent as ``MessagingServiceSid`` instead of
``From``. The provider id is the message's ``sid``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
from django.conf import settings

from messaging.channels.base import Outgoing, SendError, Sent
from messaging.channels.http import (
    client_make,
    json_or_empty,
    post,
    settings_require,
    status_error,
)

_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# Twilio error codes that mean this number will never take a message from us: invalid
# number (21211, 21217), unreachable or unroutable (21214, 21612), not a mobile number
# (21614), the recipient replied STOP (21610).
BAD_NUMBER_CODES = frozenset({21211, 21214, 21217, 21610, 21612, 21614})


class SmsBackend:
    supports_idempotency = False  # the Messages API takes no idempotency key

    def __init__(self) -> None:
        self.base_url: str = settings.MESSAGING_SMS_BASE_URL.rstrip("/")
        self.account: str = settings.MESSAGING_SMS_ACCOUNT
        self.token: str = settings.MESSAGING_SMS_TOKEN
        self.sender: str = settings.MESSAGING_SMS_FROM
        self.client = client_make()

    def send(self, message: Outgoing) -> Sent:
        settings_require(
            MESSAGING_SMS_ACCOUNT=self.account,
            MESSAGING_SMS_TOKEN=self.token,
            MESSAGING_SMS_FROM=self.sender,
        )
        url = f"{self.base_url}/2010-04-01/Accounts/{quote(self.account, safe='')}/Messages.json"
        form = sms_form(message, sender=self.sender)
        response = post(self.client, url, data=form, auth=(self.account, self.token))
        if not response.is_success:
            raise sms_error(response)
        return Sent(provider_id=str(json_or_empty(response).get("sid") or ""))


def sms_form(message: Outgoing, *, sender: str) -> dict[str, str]:
    sender_field = "MessagingServiceSid" if _SERVICE_SID.fullmatch(sender) else "From"
    return {"To": message.to, sender_field: sender, "Body": str(message.content.get("body", ""))}


def sms_error(response: httpx.Response) -> SendError:
    """Twilio's error body is ``{"code": 21211, "message": "...", "status": 400}``."""
    body = json_or_empty(response)
    code = body.get("code")
    details = " ".join(str(part) for part in (code, body.get("message")) if part)
    reason = f"sms {response.status_code}: {details}".strip()
    return status_error(response, reason, is_bad_address=code in BAD_NUMBER_CODES)
