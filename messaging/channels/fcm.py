"""Push to Android and web through Firebase Cloud Messaging's HTTP v1 API.

Auth is OAuth2 with a service account: an RS256 JWT signed with the account's private key is
exchanged at the account's ``token_uri`` for an access token, which is cached until five
minutes before it expires. Content fields: ``title``, ``body``, ``data`` (a flat mapping;
FCM wants string values, so others are sent as JSON) and ``deep_link`` (sent in the data, and
as the click link on web). The provider id is FCM's message ``name``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
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

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
ASSERTION_SECONDS = 3600
REFRESH_MARGIN_SECONDS = 300


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str


def service_account_load(path: str) -> ServiceAccount:
    try:
        with open(path, encoding="utf-8") as file:
            fields = json.load(file)
        return ServiceAccount(
            **{f.name: str(fields[f.name]) for f in dataclasses.fields(ServiceAccount)}
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"MESSAGING_FCM_CREDENTIALS_FILE is not a service-account JSON ({exc!r})"
        raise PermanentError(f"not configured: {reason}") from exc


class FcmBackend:
    supports_idempotency = False  # FCM has no idempotency key

    def __init__(self) -> None:
        self.base_url: str = settings.MESSAGING_FCM_BASE_URL.rstrip("/")
        self.credentials_file: str = settings.MESSAGING_FCM_CREDENTIALS_FILE
        self.project_id: str = settings.MESSAGING_FCM_PROJECT_ID
        self.client = client_make()
        self._account: ServiceAccount | None = None
        self._tokens = TokenCache(self._access_token_fetch)
        self._lock = threading.Lock()

    def send(self, message: Outgoing) -> Sent:
        account = self._account_get()
        project = quote(self.project_id or account.project_id, safe="")
        url = f"{self.base_url}/v1/projects/{project}/messages:send"
        headers = {"Authorization": f"Bearer {self._tokens.get()}"}
        response = post(self.client, url, json=fcm_payload(message), headers=headers)
        if response.status_code == 401:  # the cached token was revoked or expired early
            self._tokens.invalidate()
        if not response.is_success:
            raise fcm_error(response)
        return Sent(provider_id=str(json_or_empty(response).get("name") or ""))

    def _account_get(self) -> ServiceAccount:
        settings_require(MESSAGING_FCM_CREDENTIALS_FILE=self.credentials_file)
        with self._lock:
            if self._account is None:
                self._account = service_account_load(self.credentials_file)
            return self._account

    def _access_token_fetch(self, now: float) -> tuple[str, float]:
        account = self._account_get()
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion_make(account, now=int(now)),
        }
        response = post(self.client, account.token_uri, data=form)
        body = json_or_empty(response)
        if not response.is_success:
            error = f"{body.get('error', '')} {body.get('error_description', '')}".strip()
            raise status_error(response, f"fcm token {response.status_code}: {error}")
        token, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires_in, int | float):
            raise TransientError("fcm token: no access_token/expires_in in the response")
        return token, max(0.0, expires_in - REFRESH_MARGIN_SECONDS)


def assertion_make(account: ServiceAccount, *, now: int) -> str:
    """The signed JWT a service account trades for an access token (RFC 7523)."""
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": now,
        "exp": now + ASSERTION_SECONDS,
    }
    try:
        return jwt.encode(
            claims, account.private_key, algorithm="RS256", headers={"kid": account.private_key_id}
        )
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise PermanentError("not configured: the FCM service account's private_key") from exc


def fcm_payload(message: Outgoing) -> dict[str, Any]:
    content = message.content
    data = {str(k): _data_value(v) for k, v in (content.get("data") or {}).items()}
    link = str(content.get("deep_link") or "")
    if link:
        data["deep_link"] = link
    notification = {"title": str(content.get("title", "")), "body": str(content.get("body", ""))}
    body: dict[str, Any] = {"token": message.to, "notification": notification}
    if data:
        body["data"] = data
    if link and message.platform == "web":
        body["webpush"] = {"fcm_options": {"link": link}}
    return {"message": body}


def _data_value(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def fcm_error(response: httpx.Response) -> SendError:
    """UNREGISTERED, or INVALID_ARGUMENT about the token, is a bad address; 429/5xx are
    transient (a 401 too: the token is fetched anew on the retry); the rest is permanent."""
    error = json_or_empty(response).get("error")
    error = error if isinstance(error, dict) else {}
    status, text = str(error.get("status", "")), str(error.get("message", ""))
    fcm_codes = sorted(_detail_values(error, "errorCode") - {status})
    codes = {status, *fcm_codes}
    details = " ".join(part for part in (status, *fcm_codes, text) if part)
    reason = f"fcm {response.status_code}: {details}".strip()
    if response.status_code == 401:
        return TransientError(reason)
    is_bad_address = "UNREGISTERED" in codes or (
        "INVALID_ARGUMENT" in codes and _is_about_token(error, text)
    )
    return status_error(response, reason, is_bad_address=is_bad_address)


def _detail_values(error: dict[str, Any], key: str) -> set[str]:
    details = error.get("details")
    if not isinstance(details, list):
        return set()
    return {str(d[key]) for d in details if isinstance(d, dict) and key in d}


def _is_about_token(error: dict[str, Any], text: str) -> bool:
    """FCM names the token in a BadRequest field violation, or at least in the message."""
    details = error.get("details")
    violations = [
        violation
        for detail in (details if isinstance(details, list) else [])
        if isinstance(detail, dict)
        for violation in detail.get("fieldViolations") or []
    ]
    fields = {str(v.get("field")) for v in violations if isinstance(v, dict)}
    return "message.token" in fields or "registration token" in text.lower()
