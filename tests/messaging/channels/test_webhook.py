"""Outgoing webhooks: HMAC signatures, the SSRF guard and error classification."""

from __future__ import annotations

import hashlib
import hmac
import socket
from typing import Any

import httpx
import orjson
import pytest
import time_machine

from messaging.channels.base import PermanentError, Sent, TransientError
from messaging.channels.webhook import (
    WebhookBackend,
    address_is_public,
    signature_make,
    signature_verify,
)
from tests.messaging.channels.conftest import RecordingServer, Reply
from tests.messaging.channels.messages import outgoing

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
SECRET = "whsec-test"
BODY = b'{"event":"milestone.achieved","customer":"u-42"}'
CONTENT = {"event": "milestone.achieved", "customer": "u-42", "milestone": {"key": "three"}}


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.MESSAGING_WEBHOOK_SECRET = SECRET
    settings.MESSAGING_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def hook(url: str, **fields: Any) -> Any:
    return outgoing(channel="webhook", to=url, content=CONTENT, **fields)


# --- signatures -----------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert signature_make(SECRET, NOW, BODY) == f"t={NOW},v1={expected}"


def test_a_fresh_signature_verifies() -> None:
    assert signature_verify(SECRET, signature_make(SECRET, NOW, BODY), BODY, 300) is True


def test_a_tampered_body_does_not_verify() -> None:
    header = signature_make(SECRET, NOW, BODY)

    assert signature_verify(SECRET, header, BODY.replace(b"u-42", b"u-43"), 300) is False


def test_another_secret_does_not_verify() -> None:
    header = signature_make("another-secret", NOW, BODY)

    assert signature_verify(SECRET, header, BODY, 300) is False


@pytest.mark.parametrize(
    ("age", "is_valid"), [(300, True), (301, False), (-300, True), (-301, False)]
)
def test_the_timestamp_must_be_within_the_tolerance(age: int, is_valid: bool) -> None:
    header = signature_make(SECRET, NOW - age, BODY)

    assert signature_verify(SECRET, header, BODY, 300) is is_valid


def test_one_valid_signature_among_several_verifies_for_secret_rotation() -> None:
    good = signature_make(SECRET, NOW, BODY).split(",")[1]
    old = signature_make("old-secret", NOW, BODY).split(",")[1]

    assert signature_verify(SECRET, f"t={NOW},{old},{good}", BODY, 300) is True


@pytest.mark.parametrize(
    "header", ["", "garbage", f"t={NOW}", "v1=abc", f"t=x{NOW},v1=abc", f"t={NOW},v0=abc"]
)
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert signature_verify(SECRET, header, BODY, 300) is False


# --- sending --------------------------------------------------------------------------------


def test_it_posts_signed_json_to_an_allowed_host(http_server: RecordingServer) -> None:
    sent = WebhookBackend().send(hook(f"{http_server.url}/hooks/milepost?team=7"))

    assert sent == Sent(provider_id="")
    (request,) = http_server.requests
    assert (request.method, request.path) == ("POST", "/hooks/milepost?team=7")
    assert orjson.loads(request.body) == CONTENT
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{http_server.port}"
    assert request.headers["milepost-idempotency-key"] == "msg-7"
    assert request.headers["milepost-signature"] == signature_make(SECRET, NOW, request.body)
    assert signature_verify(SECRET, request.headers["milepost-signature"], request.body, 300)


def test_it_connects_to_the_address_it_checked_and_sends_the_host_name(
    settings: Any, http_server: RecordingServer
) -> None:
    settings.MESSAGING_WEBHOOK_ALLOWED_HOSTS = ["hooks.example.test"]
    lookups: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["127.0.0.1"]

    WebhookBackend(resolve=resolve).send(hook(f"http://Hooks.Example.test:{http_server.port}/in"))

    assert lookups == [("hooks.example.test", http_server.port)]
    (request,) = http_server.requests
    assert request.headers["host"] == f"hooks.example.test:{http_server.port}"


class RecordingTransport(httpx.BaseTransport):
    """The outermost seam, for hosts no test may really reach: records and answers 204."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(204)


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


def backend_with(transport: RecordingTransport, resolve: Any = None) -> WebhookBackend:
    backend = WebhookBackend(resolve=resolve) if resolve else WebhookBackend()
    backend.client = httpx.Client(transport=transport, follow_redirects=False)
    return backend


def test_a_public_https_host_is_pinned_to_its_address_with_the_tls_server_name(
    transport: RecordingTransport,
) -> None:
    backend = backend_with(transport, resolve=lambda host, port: ["93.184.215.14"])

    backend.send(hook("https://hooks.example.com/in"))

    (request,) = transport.requests
    assert str(request.url) == "https://93.184.215.14/in"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104 - a refused destination, not a bind address
    "255.255.255.255",
    "224.0.0.251",
    "240.0.0.1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
    "2001:db8::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_a_non_public_address_is_not_public(address: str) -> None:
    assert address_is_public(address) is False


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_a_public_address_is_public(address: str) -> None:
    assert address_is_public(address) is True


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.0.0.8",
        "172.16.5.4",
        "192.168.0.10",
        "169.254.169.254",
        "fc00::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",  # noqa: S104 - a refused destination, not a bind address
    ],
)
def test_a_url_on_a_non_public_address_is_refused_as_a_bad_address(
    settings: Any, transport: RecordingTransport, address: str
) -> None:
    settings.MESSAGING_WEBHOOK_ALLOWED_HOSTS = []
    host = f"[{address}]" if ":" in address else address

    with pytest.raises(PermanentError) as raised:
        backend_with(transport).send(hook(f"http://{host}:8080/in"))

    assert raised.value.is_bad_address is True
    assert raised.value.reason == f"webhook host {address} resolves to non-public {address}"
    assert transport.requests == []


def test_a_name_with_any_non_public_address_is_refused(transport: RecordingTransport) -> None:
    backend = backend_with(transport, resolve=lambda host, port: ["93.184.215.14", "10.0.0.5"])

    with pytest.raises(PermanentError) as raised:
        backend.send(hook("https://rebind.example.com/in"))

    assert raised.value.reason == "webhook host rebind.example.com resolves to non-public 10.0.0.5"
    assert transport.requests == []


def test_the_allow_list_lets_the_loopback_test_server_through(
    settings: Any, http_server: RecordingServer
) -> None:
    settings.MESSAGING_WEBHOOK_ALLOWED_HOSTS = []
    with pytest.raises(PermanentError):
        WebhookBackend().send(hook(f"{http_server.url}/in"))

    settings.MESSAGING_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    WebhookBackend().send(hook(f"{http_server.url}/in"))

    assert [r.path for r in http_server.requests] == ["/in"]


def test_a_redirect_is_not_followed(http_server: RecordingServer) -> None:
    http_server.reply(
        "/in", Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data"})
    )

    with pytest.raises(PermanentError) as raised:
        WebhookBackend().send(hook(f"{http_server.url}/in"))

    assert (raised.value.reason, raised.value.is_bad_address) == ("webhook 302", False)
    assert [r.path for r in http_server.requests] == ["/in"]


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [(Reply(429, b"", {"Retry-After": "20"}), 20.0), (Reply(500), None), (Reply(503), None)],
)
def test_throttling_and_server_errors_are_transient(
    http_server: RecordingServer, reply: Reply, retry_after: float | None
) -> None:
    http_server.reply("/in", reply)

    with pytest.raises(TransientError) as raised:
        WebhookBackend().send(hook(f"{http_server.url}/in"))

    assert (raised.value.reason, raised.value.retry_after) == (
        f"webhook {reply.status}",
        retry_after,
    )


@pytest.mark.parametrize(("status", "is_bad_address"), [(400, False), (404, False), (410, True)])
def test_client_errors_are_permanent_and_gone_is_a_bad_address(
    http_server: RecordingServer, status: int, is_bad_address: bool
) -> None:
    http_server.reply("/in", Reply(status))

    with pytest.raises(PermanentError) as raised:
        WebhookBackend().send(hook(f"{http_server.url}/in"))

    assert (raised.value.reason, raised.value.is_bad_address) == (
        f"webhook {status}",
        is_bad_address,
    )


def test_a_receiver_that_never_answers_is_a_transient_timeout(
    settings: Any, silent_port: int
) -> None:
    settings.MESSAGING_HTTP_TIMEOUT_SECONDS = 0.2

    with pytest.raises(TransientError) as raised:
        WebhookBackend().send(hook(f"http://127.0.0.1:{silent_port}/in"))

    assert raised.value.reason == "ReadTimeout: timed out"


def test_a_host_that_does_not_resolve_is_transient(transport: RecordingTransport) -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(TransientError) as raised:
        backend_with(transport, resolve=resolve).send(hook("https://hooks.example.com/in"))

    assert raised.value.reason == (
        "webhook host hooks.example.com does not resolve: "
        "[Errno -3] Temporary failure in name resolution"
    )
    assert transport.requests == []


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/in", "hooks.example.com/in", "http://"])
def test_a_url_that_is_not_http_is_a_bad_address(transport: RecordingTransport, url: str) -> None:
    with pytest.raises(PermanentError) as raised:
        backend_with(transport).send(hook(url))

    assert raised.value.is_bad_address is True
    assert transport.requests == []


def test_without_a_secret_it_is_not_configured(settings: Any, http_server: RecordingServer) -> None:
    settings.MESSAGING_WEBHOOK_SECRET = ""

    with pytest.raises(PermanentError) as raised:
        WebhookBackend().send(hook(f"{http_server.url}/in"))

    assert raised.value.reason == "not configured: MESSAGING_WEBHOOK_SECRET"
    assert http_server.requests == []
