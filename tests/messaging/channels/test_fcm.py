"""FCM HTTP v1, with the service-account token exchange, against a local recording server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric import rsa

from messaging.channels.base import Outgoing, PermanentError, Sent, TransientError
from messaging.channels.fcm import FcmBackend
from tests.messaging.channels.conftest import FCM_SEND_PATH, FCM_TOKEN, RecordingServer, Reply
from tests.messaging.channels.messages import outgoing

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
SEND_PATH = FCM_SEND_PATH
SENT = Reply(200, {"name": "projects/milepost-demo/messages/0:1767225600%31bd1c96"})
TOKEN = FCM_TOKEN


@pytest.fixture(autouse=True)
def _provider(fcm_provider: Path, http_server: RecordingServer) -> None:
    http_server.reply(SEND_PATH, SENT)


@pytest.fixture(autouse=True)
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def push(**fields: Any) -> Outgoing:
    fields.setdefault("platform", "android")
    fields.setdefault(
        "content",
        {
            "title": "Milestone!",
            "body": "You created 3 reports",
            "data": {"milestone": "three-reports", "count": 3, "new": True},
            "deep_link": "milepost://milestones/three-reports",
        },
    )
    return outgoing(channel="push", to="fcm-token-1", **fields)


def sends(server: RecordingServer) -> list[Any]:
    return [r for r in server.requests if r.path == SEND_PATH]


def token_requests(server: RecordingServer) -> list[Any]:
    return [r for r in server.requests if r.path == "/token"]


def test_it_trades_a_signed_jwt_for_an_access_token(
    http_server: RecordingServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    FcmBackend().send(push())

    (exchange,) = token_requests(http_server)
    form = exchange.form()
    assert form.keys() == {"grant_type", "assertion"}
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert jwt.get_unverified_header(form["assertion"]) == {
        "alg": "RS256",
        "kid": "key-1",
        "typ": "JWT",
    }
    claims = jwt.decode(
        form["assertion"],
        rsa_key.public_key(),
        algorithms=["RS256"],
        audience=f"{http_server.url}/token",
    )
    assert claims == {
        "iss": "push@milepost-demo.iam.gserviceaccount.com",
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": f"{http_server.url}/token",
        "iat": NOW,
        "exp": NOW + 3600,
    }


def test_it_posts_the_notification_data_and_deep_link(http_server: RecordingServer) -> None:
    sent = FcmBackend().send(push())

    assert sent == Sent(provider_id="projects/milepost-demo/messages/0:1767225600%31bd1c96")
    (request,) = sends(http_server)
    assert request.headers["authorization"] == "Bearer ya29.first"
    assert request.json() == {
        "message": {
            "token": "fcm-token-1",
            "notification": {"title": "Milestone!", "body": "You created 3 reports"},
            "data": {
                "milestone": "three-reports",
                "count": "3",
                "new": "true",
                "deep_link": "milepost://milestones/three-reports",
            },
        }
    }


def test_on_web_the_deep_link_is_also_the_click_link(http_server: RecordingServer) -> None:
    content = {"title": "T", "body": "B", "deep_link": "https://app.example.com/m/3"}

    FcmBackend().send(push(platform="web", content=content))

    (request,) = sends(http_server)
    assert request.json() == {
        "message": {
            "token": "fcm-token-1",
            "notification": {"title": "T", "body": "B"},
            "data": {"deep_link": "https://app.example.com/m/3"},
            "webpush": {"fcm_options": {"link": "https://app.example.com/m/3"}},
        }
    }


def test_the_access_token_is_reused_until_five_minutes_before_it_expires(
    http_server: RecordingServer, clock: Any
) -> None:
    backend = FcmBackend()
    http_server.reply(
        "/token", TOKEN, Reply(200, {"access_token": "ya29.second", "expires_in": 3599})
    )

    backend.send(push())
    clock.shift(3599 - 300 - 1)
    backend.send(push())
    clock.shift(1)
    backend.send(push())

    assert len(token_requests(http_server)) == 2
    assert [r.headers["authorization"] for r in sends(http_server)] == [
        "Bearer ya29.first",
        "Bearer ya29.first",
        "Bearer ya29.second",
    ]


def fcm_error(
    http_status: int, status: str, code: str, message: str, headers: dict[str, str] | None = None
) -> Reply:
    """FCM's error body: a google.rpc status and, in the details, FCM's own error code."""
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    error = {"code": http_status, "message": message, "status": status, "details": details}
    return Reply(http_status, {"error": error}, headers or {})


def test_an_unregistered_token_is_a_permanent_bad_address(http_server: RecordingServer) -> None:
    http_server.reply(
        SEND_PATH, fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
    )

    with pytest.raises(PermanentError) as raised:
        FcmBackend().send(push())

    assert raised.value.is_bad_address is True
    assert raised.value.reason == "fcm 404: NOT_FOUND UNREGISTERED Requested entity was not found."


def test_an_invalid_token_is_a_permanent_bad_address(http_server: RecordingServer) -> None:
    message = "The registration token is not a valid FCM registration token"
    reply = fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", message)
    http_server.reply(SEND_PATH, reply)

    with pytest.raises(PermanentError) as raised:
        FcmBackend().send(push())

    assert raised.value.is_bad_address is True
    assert raised.value.reason == f"fcm 400: INVALID_ARGUMENT {message}"


def test_an_invalid_argument_elsewhere_is_permanent_but_not_the_tokens_fault(
    http_server: RecordingServer,
) -> None:
    violation = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "message.data[0].key", "description": "Invalid key"}],
    }
    body = {
        "error": {
            "code": 400,
            "message": "Invalid data",
            "status": "INVALID_ARGUMENT",
            "details": [violation],
        }
    }
    http_server.reply(SEND_PATH, Reply(400, body))

    with pytest.raises(PermanentError) as raised:
        FcmBackend().send(push())

    assert raised.value.is_bad_address is False
    assert raised.value.reason == "fcm 400: INVALID_ARGUMENT Invalid data"


def test_a_field_violation_on_the_token_is_a_bad_address(http_server: RecordingServer) -> None:
    violation = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "message.token", "description": "Invalid registration"}],
    }
    body = {
        "error": {
            "code": 400,
            "message": "Bad",
            "status": "INVALID_ARGUMENT",
            "details": [violation],
        }
    }
    http_server.reply(SEND_PATH, Reply(400, body))

    with pytest.raises(PermanentError) as raised:
        FcmBackend().send(push())

    assert raised.value.is_bad_address is True


def test_429_is_transient_with_retry_after(http_server: RecordingServer) -> None:
    reply = fcm_error(
        429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded", {"Retry-After": "30"}
    )
    http_server.reply(SEND_PATH, reply)

    with pytest.raises(TransientError) as raised:
        FcmBackend().send(push())

    assert (raised.value.reason, raised.value.retry_after) == (
        "fcm 429: RESOURCE_EXHAUSTED QUOTA_EXCEEDED Quota exceeded",
        30.0,
    )


def test_500_is_transient(http_server: RecordingServer) -> None:
    http_server.reply(SEND_PATH, fcm_error(500, "INTERNAL", "INTERNAL", "Internal error"))

    with pytest.raises(TransientError):
        FcmBackend().send(push())


def test_a_401_is_transient_and_the_retry_fetches_a_new_token(http_server: RecordingServer) -> None:
    backend = FcmBackend()
    http_server.reply(
        "/token", TOKEN, Reply(200, {"access_token": "ya29.second", "expires_in": 3599})
    )
    http_server.reply(
        SEND_PATH, Reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}), SENT
    )

    with pytest.raises(TransientError):
        backend.send(push())
    backend.send(push())

    assert [r.headers["authorization"] for r in sends(http_server)] == [
        "Bearer ya29.first",
        "Bearer ya29.second",
    ]


def test_a_refused_token_exchange_is_permanent_and_sends_nothing(
    http_server: RecordingServer,
) -> None:
    body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    http_server.reply("/token", Reply(400, body))

    with pytest.raises(PermanentError) as raised:
        FcmBackend().send(push())

    assert raised.value.reason == "fcm token 400: invalid_grant Invalid JWT Signature."
    assert sends(http_server) == []


def test_a_token_endpoint_outage_is_transient(http_server: RecordingServer) -> None:
    http_server.reply("/token", Reply(503, b"unavailable", {"Retry-After": "5"}))

    with pytest.raises(TransientError) as raised:
        FcmBackend().send(push())

    assert raised.value.retry_after == 5.0
    assert sends(http_server) == []


def test_without_credentials_it_is_not_configured(
    settings: Any, http_server: RecordingServer
) -> None:
    settings.MESSAGING_FCM_CREDENTIALS_FILE = ""

    with pytest.raises(PermanentError) as raised:
        FcmBackend().send(push())

    assert raised.value.reason == "not configured: MESSAGING_FCM_CREDENTIALS_FILE"
    assert http_server.requests == []


def test_a_file_that_is_not_a_service_account_is_not_configured(
    settings: Any, tmp_path: Path, http_server: RecordingServer
) -> None:
    path = tmp_path / "wrong.json"
    path.write_text('{"type": "authorized_user"}')
    settings.MESSAGING_FCM_CREDENTIALS_FILE = str(path)

    with pytest.raises(PermanentError) as raised:
        FcmBackend().send(push())

    assert raised.value.reason.startswith(
        "not configured: MESSAGING_FCM_CREDENTIALS_FILE is not a service-account JSON"
    )
    assert http_server.requests == []
