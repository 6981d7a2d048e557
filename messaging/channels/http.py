"""What the HTTP backends share: the client, the timeout, Retry-After and the rule that turns
an HTTP status into a transient or a permanent error."""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from django.conf import settings

from messaging.channels.base import PermanentError, SendError, TransientError


def client_make(*, http2: bool = False, keepalive: bool = True) -> httpx.Client:
    """A client that never follows redirects: a provider that moves is a configuration
    change, and a webhook redirect must not lead around the SSRF guard."""
    timeout = float(settings.MESSAGING_HTTP_TIMEOUT_SECONDS)
    limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(timeout=timeout, http2=http2, follow_redirects=False, limits=limits)


def retry_after_parse(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    seconds: float | None
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = _http_date_delta(value, now=time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _http_date_delta(value: str, *, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return when.timestamp() - now


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def status_error(
    response: httpx.Response, reason: str, *, is_bad_address: bool = False
) -> SendError:
    """The error for a non-2xx response: 408/429/5xx are transient (honouring Retry-After),
    anything else (3xx, 4xx) is permanent."""
    if is_transient_status(response.status_code):
        retry_after = retry_after_parse(response.headers.get("Retry-After"))
        return TransientError(reason, retry_after=retry_after)
    return PermanentError(reason, is_bad_address=is_bad_address)


def post(client: httpx.Client, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
    """POST, with every network failure (refused, reset, timeout, TLS) as a TransientError."""
    try:
        return client.post(url, **kwargs)
    except httpx.TransportError as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc


def json_or_empty(response: httpx.Response) -> dict[str, Any]:
    """The response body as a JSON object, or ``{}`` when it is not one (an HTML error page
    from a proxy, an empty body)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def settings_require(**values: object) -> None:
    """Raise ``PermanentError("not configured: NAME, ...")`` naming each empty setting: a
    backend without its credentials fails every message the same clear way."""
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise PermanentError(f"not configured: {', '.join(missing)}")


class TokenCache:
    """A bearer token fetched on first use and reused until its time is up, one fetch at a
    time across threads. ``fetch(now)`` returns the token and how many seconds to keep it."""

    def __init__(self, fetch: Callable[[float], tuple[str, float]]) -> None:
        self._fetch = fetch
        self._token = ""
        self._refresh_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            now = time.time()
            if not self._token or now >= self._refresh_at:
                self._token, keep_seconds = self._fetch(now)
                self._refresh_at = now + keep_seconds
            return self._token

    def invalidate(self) -> None:
        """Forget the token: the provider said it expired or was revoked early."""
        with self._lock:
            self._token = ""
