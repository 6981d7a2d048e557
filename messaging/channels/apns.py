"""Push to iOS through the Apple Push Notification service (HTTP/2, token-based auth).

Each request carries an ES256 JWT (key id + team id) signed with the ``.p8`` key and reused
for 50 minutes (Apple accepts a token for an hour and refuses refreshing more often than every
20 minutes). Content fields: ``title``, ``body``, ``data`` (custom keys beside ``aps``) and
``deep_link``. ``apns-id`` is a UUID derived from the idempotency key, so a retry carries the
same id; it is also the provider id.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import orjson
from django.conf import settings

from messaging.channels.base import Outgoing, PermanentError, SendError, Sent, TransientError
from messaging.channels.http import (
    TokenCache,
    client_make,
    json_or_empty,
    post,
    settings_require,
    status_error,
)

TOKEN_SECONDS = 50 * 60
_APNS_ID_NAMESPACE = uuid.UUID("584614ff-6287-4bab-ab8f-2b06f3e800e0")
# Reasons that mean the device token will never work for this app again.
BAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "Unregistered", "ExpiredToken"})


class ApnsBackend:
    # apns-id is deterministic, but Apple documents it as an id for error reports, not as a
    # deduplication key: a resend after an unknown outcome may show the alert twice.
    supports_idempotency = False

    def __init__(self) -> None:
        self.base_url: str = settings.MESSAGING_APNS_BASE_URL.rstrip("/")
        self.key_file: str = settings.MESSAGING_APNS_KEY_FILE
        self.key_id: str = settings.MESSAGING_APNS_KEY_ID
        self.team_id: str = settings.MESSAGING_APNS_TEAM_ID
        self.topic: str = settings.MESSAGING_APNS_TOPIC
        self.http2: bool = settings.MESSAGING_APNS_HTTP2
        self.client = client_make(http2=self.http2)  # http2=True needs h2 (httpx[http2])
        self._key = ""
        self._tokens = TokenCache(self._provider_token_make)
        self._lock = threading.Lock()

    def send(self, message: Outgoing) -> Sent:
        settings_require(
            MESSAGING_APNS_KEY_FILE=self.key_file,
            MESSAGING_APNS_KEY_ID=self.key_id,
            MESSAGING_APNS_TEAM_ID=self.team_id,
            MESSAGING_APNS_TOPIC=self.topic,
        )
        apns_id = apns_id_make(message.idempotency_key)
        headers = {
            "authorization": f"bearer {self._tokens.get()}",
            "apns-topic": self.topic,
            "apns-push-type": "alert",
            "apns-id": apns_id,
            "content-type": "application/json",
        }
        url = f"{self.base_url}/3/device/{quote(message.to, safe='')}"
        body = orjson.dumps(apns_payload(message))
        response = post(self.client, url, content=body, headers=headers)
        if not response.is_success:
            if apns_reason(response) == "ExpiredProviderToken":
                self._tokens.invalidate()  # so that the retry signs a fresh one
            raise apns_error(response)
        return Sent(provider_id=response.headers.get("apns-id", apns_id))

    def _provider_token_make(self, now: float) -> tuple[str, float]:
        claims = {"iss": self.team_id, "iat": int(now)}
        try:
            token = jwt.encode(
                claims, self._key_get(), algorithm="ES256", headers={"kid": self.key_id}
            )
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            reason = "not configured: MESSAGING_APNS_KEY_FILE is not an EC private key"
            raise PermanentError(reason) from exc
        return token, TOKEN_SECONDS

    def _key_get(self) -> str:
        with self._lock:
            if not self._key:
                try:
                    with open(self.key_file, encoding="utf-8") as file:
                        self._key = file.read()
                except OSError as exc:
                    raise PermanentError(
                        f"not configured: MESSAGING_APNS_KEY_FILE cannot be read ({exc})"
                    ) from exc
            return self._key


def apns_id_make(idempotency_key: str) -> str:
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, idempotency_key))


def apns_payload(message: Outgoing) -> dict[str, Any]:
    content = message.content
    payload: dict[str, Any] = {k: v for k, v in (content.get("data") or {}).items() if k != "aps"}
    if link := content.get("deep_link"):
        payload["deep_link"] = str(link)
    alert = {"title": str(content.get("title", "")), "body": str(content.get("body", ""))}
    payload["aps"] = {"alert": alert}
    return payload


def apns_reason(response: httpx.Response) -> str:
    """APNs explains an error in a JSON body: ``{"reason": "BadDeviceToken"}``."""
    return str(json_or_empty(response).get("reason", ""))


def apns_error(response: httpx.Response) -> SendError:
    """410, or a 400 BadDeviceToken, is a bad address; an expired provider token is transient
    (a fresh one is made for the retry); 429/5xx transient; the rest permanent."""
    reason_code = apns_reason(response)
    reason = f"apns {response.status_code}: {reason_code}".strip()
    if reason_code == "ExpiredProviderToken":
        return TransientError(reason)
    is_bad_address = response.status_code == 410 or reason_code in BAD_TOKEN_REASONS
    return status_error(response, reason, is_bad_address=is_bad_address)
