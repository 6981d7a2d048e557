"""Loopback servers for the channel backends: a recording HTTP server (the provider's side
of SMS, FCM, APNs and webhooks) and a real SMTP server (aiosmtpd). No test here has the
``django_db`` mark: a backend that touched the database would fail."""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from messaging.channels import ratelimit
from messaging.channels.registry import backends_reset


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names in lower case
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class RecordingServer:
    """Records every request; answers each path with its queued replies in order (the last
    one repeats), or 200 with an empty body."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def reply(self, path: str, *replies: Reply) -> None:
        self._replies[path] = list(replies)

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            queued = self._replies.get(path.split("?")[0], [])
            return queued.pop(0) if len(queued) > 1 else (queued[0] if queued else Reply())

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                headers = {name.lower(): value for name, value in self.headers.items()}
                server._record(Recorded("POST", self.path, headers, self.rfile.read(length)))
                reply = server._next_reply(self.path)
                body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if not isinstance(reply.body, bytes):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def serve(self) -> None:
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def http_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    server.serve()
    yield server
    server.close()


class RecordingSmtpHandler:
    """Accepts mail for anyone except ``bounce@…`` (550: no such user) and ``busy@…``
    (451: try again later)."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 No such user here"
        if address.startswith("busy@"):
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[RecordingSmtpHandler]:
    """A real SMTP server on a free loopback port, and Django's SMTP backend pointed at it."""
    handler = RecordingSmtpHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    yield handler
    controller.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


FCM_SEND_PATH = "/v1/projects/milepost-demo/messages:send"
FCM_TOKEN = Reply(200, {"access_token": "ya29.first", "expires_in": 3599, "token_type": "Bearer"})


@pytest.fixture
def fcm_provider(
    settings: Any, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, http_server: RecordingServer
) -> Path:
    """FCM and its token endpoint played by ``http_server``, with a fresh service account."""
    account = {
        "type": "service_account",
        "project_id": "milepost-demo",
        "private_key_id": "key-1",
        "private_key": pem(rsa_key).decode(),
        "client_email": "push@milepost-demo.iam.gserviceaccount.com",
        "token_uri": f"{http_server.url}/token",
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    settings.MESSAGING_FCM_BASE_URL = http_server.url
    settings.MESSAGING_FCM_CREDENTIALS_FILE = str(path)
    settings.MESSAGING_FCM_PROJECT_ID = ""
    http_server.reply("/token", FCM_TOKEN)
    return path


@pytest.fixture
def apns_provider(
    settings: Any, tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey, http_server: RecordingServer
) -> Path:
    """APNs played by ``http_server`` over HTTP/1.1, with a fresh .p8 key."""
    path = tmp_path / "AuthKey_ABC123DEFG.p8"
    path.write_bytes(pem(ec_key))
    settings.MESSAGING_APNS_BASE_URL = http_server.url
    settings.MESSAGING_APNS_HTTP2 = False
    settings.MESSAGING_APNS_KEY_FILE = str(path)
    settings.MESSAGING_APNS_KEY_ID = "ABC123DEFG"
    settings.MESSAGING_APNS_TEAM_ID = "DEF123GHIJ"
    settings.MESSAGING_APNS_TOPIC = "com.example.milepost"
    return path


@pytest.fixture(autouse=True)
def _fresh_backends() -> Iterator[None]:
    backends_reset()
    ratelimit.local_buckets_reset()
    yield
    backends_reset()
    ratelimit.local_buckets_reset()
