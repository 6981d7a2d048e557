"""APNs with token auth (ES256), over HTTP/1.1 against a local recording server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric import ec

from messaging.channels.apns import ApnsBackend, apns_id_make
from messaging.channels.base import Outgoing, PermanentError, Sent, TransientError
from tests.messaging.channels.conftest import RecordingServer, Reply
from tests.messaging.channels.messages import outgoing

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
DEVICE = "a1b2c3d4" * 8
DEVICE_PATH = f"/3/device/{DEVICE}"
APNS_ID = apns_id_make("msg-7")


@pytest.fixture(autouse=True)
def _provider(apns_provider: Path, http_server: RecordingServer) -> None:
    http_server.reply(DEVICE_PATH, Reply(200, b"", {"apns-id": APNS_ID}))


@pytest.fixture(autouse=True)
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def push(**fields: Any) -> Outgoing:
    fields.setdefault(
        "content",
        {
            "title": "Milestone!",
            "body": "You created 3 reports",
            "data": {"milestone": "three-reports", "count": 3},
            "deep_link": "milepost://milestones/three-reports",
        },
    )
    return outgoing(channel="push", platform="ios", to=DEVICE, **fields)


def test_it_posts_the_alert_with_topic_push_type_and_apns_id(http_server: RecordingServer) -> None:
    sent = ApnsBackend().send(push())

    assert sent == Sent(provider_id=APNS_ID)
    (request,) = http_server.requests
    assert (request.method, request.path) == ("POST", DEVICE_PATH)
    assert request.headers["apns-topic"] == "com.example.milepost"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-id"] == APNS_ID
    assert request.json() == {
        "aps": {"alert": {"title": "Milestone!", "body": "You created 3 reports"}},
        "milestone": "three-reports",
        "count": 3,
        "deep_link": "milepost://milestones/three-reports",
    }


def test_the_provider_token_is_an_es256_jwt_with_key_and_team_ids(
    http_server: RecordingServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    ApnsBackend().send(push())

    (request,) = http_server.requests
    scheme, token = request.headers["authorization"].split(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "ABC123DEFG", "typ": "JWT"}
    claims = jwt.decode(token, ec_key.public_key(), algorithms=["ES256"])
    assert claims == {"iss": "DEF123GHIJ", "iat": NOW}


def test_the_apns_id_is_a_uuid_derived_from_the_idempotency_key() -> None:
    assert uuid.UUID(APNS_ID).version == 5
    assert apns_id_make("msg-7") == APNS_ID
    assert apns_id_make("msg-8") != APNS_ID


def test_the_provider_token_is_renewed_after_fifty_minutes(
    http_server: RecordingServer, ec_key: ec.EllipticCurvePrivateKey, clock: Any
) -> None:
    backend = ApnsBackend()

    backend.send(push())
    clock.shift(50 * 60 - 1)
    backend.send(push())
    clock.shift(1)
    backend.send(push())

    tokens = [r.headers["authorization"].split(" ")[1] for r in http_server.requests]
    issued = [jwt.decode(t, ec_key.public_key(), algorithms=["ES256"])["iat"] for t in tokens]
    assert tokens[0] == tokens[1] != tokens[2]
    assert issued == [NOW, NOW, NOW + 50 * 60]


@pytest.mark.parametrize(
    ("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken"), (410, "ExpiredToken")]
)
def test_a_dead_device_token_is_a_permanent_bad_address(
    http_server: RecordingServer, status: int, reason: str
) -> None:
    http_server.reply(DEVICE_PATH, Reply(status, {"reason": reason}))

    with pytest.raises(PermanentError) as raised:
        ApnsBackend().send(push())

    assert (raised.value.reason, raised.value.is_bad_address) == (f"apns {status}: {reason}", True)


def test_another_400_is_permanent_but_not_the_devices_fault(http_server: RecordingServer) -> None:
    http_server.reply(DEVICE_PATH, Reply(400, {"reason": "PayloadTooLarge"}))

    with pytest.raises(PermanentError) as raised:
        ApnsBackend().send(push())

    assert (raised.value.reason, raised.value.is_bad_address) == (
        "apns 400: PayloadTooLarge",
        False,
    )


@pytest.mark.parametrize(
    ("status", "reason", "headers", "retry_after"),
    [
        (429, "TooManyRequests", {"Retry-After": "12"}, 12.0),
        (500, "InternalServerError", {}, None),
        (503, "ServiceUnavailable", {}, None),
    ],
)
def test_throttling_and_outages_are_transient(
    http_server: RecordingServer,
    status: int,
    reason: str,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    http_server.reply(DEVICE_PATH, Reply(status, {"reason": reason}, headers))

    with pytest.raises(TransientError) as raised:
        ApnsBackend().send(push())

    assert (raised.value.reason, raised.value.retry_after) == (
        f"apns {status}: {reason}",
        retry_after,
    )


def test_an_expired_provider_token_is_transient_and_renewed_for_the_retry(
    http_server: RecordingServer, ec_key: ec.EllipticCurvePrivateKey, clock: Any
) -> None:
    backend = ApnsBackend()
    http_server.reply(
        DEVICE_PATH,
        Reply(403, {"reason": "ExpiredProviderToken"}),
        Reply(200, b"", {"apns-id": APNS_ID}),
    )

    with pytest.raises(TransientError):
        backend.send(push())
    clock.shift(60)
    backend.send(push())

    tokens = [r.headers["authorization"].split(" ")[1] for r in http_server.requests]
    issued = [jwt.decode(t, ec_key.public_key(), algorithms=["ES256"])["iat"] for t in tokens]
    assert issued == [NOW, NOW + 60]


def test_an_invalid_provider_token_is_permanent(http_server: RecordingServer) -> None:
    http_server.reply(DEVICE_PATH, Reply(403, {"reason": "InvalidProviderToken"}))

    with pytest.raises(PermanentError) as raised:
        ApnsBackend().send(push())

    assert (raised.value.reason, raised.value.is_bad_address) == (
        "apns 403: InvalidProviderToken",
        False,
    )


def test_without_a_key_it_is_not_configured_and_sends_nothing(
    settings: Any, http_server: RecordingServer
) -> None:
    settings.MESSAGING_APNS_KEY_FILE = ""
    settings.MESSAGING_APNS_TEAM_ID = ""

    with pytest.raises(PermanentError) as raised:
        ApnsBackend().send(push())

    assert raised.value.reason == "not configured: MESSAGING_APNS_KEY_FILE, MESSAGING_APNS_TEAM_ID"
    assert http_server.requests == []


def test_a_key_file_that_is_not_an_ec_key_is_not_configured(
    settings: Any, tmp_path: Path, http_server: RecordingServer
) -> None:
    key_file = tmp_path / "not-a-key.p8"
    key_file.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    settings.MESSAGING_APNS_KEY_FILE = str(key_file)

    with pytest.raises(PermanentError) as raised:
        ApnsBackend().send(push())

    assert raised.value.reason == "not configured: MESSAGING_APNS_KEY_FILE is not an EC private key"
    assert http_server.requests == []


def test_production_mode_uses_http2(settings: Any) -> None:
    settings.MESSAGING_APNS_HTTP2 = True

    backend = ApnsBackend()  # httpx refuses http2=True at once when h2 is missing

    assert backend.http2 is True
