"""Outgoing webhooks: the message's content as a JSON POST to the URL in ``Outgoing.to``.

Signature: ``Milepost-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256(``MESSAGING_WEBHOOK_SECRET``, ``"<t>." + body``) over the exact body bytes.
A receiver recomputes it, compares in constant time and refuses a ``t`` outside its tolerance
(replays); several ``v1=`` values may appear while a secret is rotated. The idempotency key is
sent as ``Milepost-Idempotency-Key`` so a receiver can drop a retried delivery.

SSRF guard: the host is resolved once and every address must be public (not private,
loopback, link-local, multicast, reserved or unspecified, IPv4 or IPv6, also when embedded
in IPv6 as IPv4-mapped, 6to4 or NAT64) unless the host is in
``MESSAGING_WEBHOOK_ALLOWED_HOSTS``. The request goes to the checked address itself (the
URL's host is kept in the Host header and as TLS server name), so DNS cannot answer
differently in between; redirects are never followed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import httpx
import orjson
from django.conf import settings

from messaging.channels.base import Outgoing, PermanentError, Sent, TransientError
from messaging.channels.http import client_make, post, settings_require, status_error

SIGNATURE_HEADER = "Milepost-Signature"
IDEMPOTENCY_HEADER = "Milepost-Idempotency-Key"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def signature_make(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The ``Milepost-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def signature_verify(
    secret: str | bytes, header: str, body: bytes, tolerance_seconds: float
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within
    ``tolerance_seconds`` of now (either way). Malformed headers are simply invalid."""
    timestamp, signatures = _signature_parse(header)
    if timestamp is None or abs(time.time() - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, timestamp, body)
    # Compare against every candidate so the time taken says nothing about which one matched.
    matches = [hmac.compare_digest(expected, signature) for signature in signatures]
    return any(matches)


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _signature_parse(header: str) -> tuple[int | None, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    return timestamp, signatures


def address_is_public(address: str) -> bool:
    """Whether an IP address, and any IPv4 address embedded in it, is publicly routable."""
    ip = ipaddress.ip_address(address)
    return all(_is_public(candidate) for candidate in _with_embedded(ip))


def _with_embedded(ip: IPAddress) -> Iterator[IPAddress]:
    yield ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            yield ip.ipv4_mapped
        if ip.sixtofour:
            yield ip.sixtofour
        if ip in _NAT64:
            yield ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _is_public(ip: IPAddress) -> bool:
    is_site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or is_site_local
    )


def addresses_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    url: httpx.URL  # the URL with its host replaced by the checked address
    host: str  # the URL's own host: Host header and TLS server name


def target_check(url: str, *, allowed_hosts: Collection[str], resolve: Resolver) -> Target:
    """Resolve the URL's host once and pin the request to a checked address; a refused URL
    is a bad address (it will never be sent to)."""
    parsed = _url_parse(url)
    host = parsed.raw_host.decode("ascii").strip("[]").lower()
    try:
        addresses = resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        raise TransientError(f"webhook host {host} does not resolve: {exc}") from exc
    if not addresses:
        raise TransientError(f"webhook host {host} has no address")
    if host not in allowed_hosts:
        for address in addresses:
            if not address_is_public(address):
                raise PermanentError(
                    f"webhook host {host} resolves to non-public {address}", is_bad_address=True
                )
    return Target(url=parsed.copy_with(host=addresses[0]), host=host)


def _url_parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PermanentError(f"webhook url is invalid: {exc}", is_bad_address=True) from exc
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise PermanentError("webhook url must be http(s) with a host", is_bad_address=True)
    return parsed


class WebhookBackend:
    # The receiver may dedupe on Milepost-Idempotency-Key, but nothing says it does.
    supports_idempotency = False

    def __init__(self, *, resolve: Resolver = addresses_resolve, secret: str | None = None) -> None:
        # ``secret``: sign with this instead of ``MESSAGING_WEBHOOK_SECRET`` (a journeys
        # webhook endpoint has its own).
        self.secret: str = settings.MESSAGING_WEBHOOK_SECRET if secret is None else secret
        allowed = settings.MESSAGING_WEBHOOK_ALLOWED_HOSTS
        self.allowed_hosts = frozenset(host.strip("[]").lower() for host in allowed)
        self.resolve = resolve
        # No connection reuse: the pool is keyed by the pinned address, and a TLS connection
        # verified for one host name must not carry another host's request on a shared IP.
        self.client = client_make(keepalive=False)

    def send(self, message: Outgoing) -> Sent:
        settings_require(MESSAGING_WEBHOOK_SECRET=self.secret)
        target = target_check(message.to, allowed_hosts=self.allowed_hosts, resolve=self.resolve)
        body = _body_encode(message.content)
        headers = {
            "Host": _host_header(target),
            "Content-Type": "application/json",
            "User-Agent": "Milepost-Webhooks/1",
            IDEMPOTENCY_HEADER: message.idempotency_key,
            SIGNATURE_HEADER: signature_make(self.secret, int(time.time()), body),
        }
        # TLS is checked against the URL's host although the socket goes to the pinned address.
        tls = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        response = post(self.client, target.url, content=body, headers=headers, extensions=tls)
        if not response.is_success:
            reason = f"webhook {response.status_code}"
            raise status_error(response, reason, is_bad_address=response.status_code == 410)
        return Sent()


def _body_encode(content: Any) -> bytes:
    try:
        return orjson.dumps(dict(content))
    except TypeError as exc:
        raise PermanentError(f"webhook content is not JSON: {exc}") from exc


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.url.scheme == "https" else 80
    port = target.url.port
    return host if port in (None, default_port) else f"{host}:{port}"
