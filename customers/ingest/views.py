"""Segment Tracking API endpoints (``/v1/...``). Thin: authenticate, read, parse, store.

Plain Django views, not DRF: serializers cost ~30 µs per object and this is the hot path.
Authentication is by source write key (HTTP Basic username as the SDKs send it, a Bearer
token, or ``writeKey`` in the body), never by cookie, so CSRF does not apply.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import zlib
from collections.abc import Callable

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from customers.ingest.parsing import (
    Limits,
    ParsedBatch,
    ParseError,
    parse_batch,
    parse_single,
    write_key_peek,
)
from customers.ingest.service import IngestBusy, events_ingest
from customers.selectors import source_for_key

_OK = orjson.dumps({"success": True})


def _json(status: int, payload: object, **headers: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _limits() -> Limits:
    return Limits(
        max_message_bytes=settings.INGEST_MAX_MESSAGE_BYTES,
        max_batch_bytes=settings.INGEST_MAX_BATCH_BYTES,
        future_tolerance=dt.timedelta(seconds=settings.INGEST_FUTURE_TOLERANCE_SECONDS),
    )


def _header_key(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def _body(request: HttpRequest, limit: int) -> bytes:
    try:
        body = request.body
    except RequestDataTooBig as exc:
        # Past DATA_UPLOAD_MAX_MEMORY_SIZE Django would answer with an HTML page, not our JSON.
        raise ParseError(f"body exceeds the limit of {limit} bytes") from exc
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            # One byte over the limit is enough to know the body is too large.
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise ParseError(f"body is not valid gzip: {exc}") from exc
        if len(body) > limit or inflater.unconsumed_tail:
            raise ParseError(f"decompressed body exceeds the limit of {limit} bytes")
    return body


def _unauthorized() -> HttpResponse:
    return _json(
        401,
        {"success": False, "error": "invalid or missing write key"},
        WWW_Authenticate='Basic realm="milepost"',
    )


def _endpoint(
    parse: Callable[[bytes, dt.datetime, Limits], ParsedBatch], size_limit: Callable[[], int]
) -> Callable[[HttpRequest], HttpResponse]:
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> HttpResponse:
        received_at = timezone.now()
        header_key = _header_key(request)
        # Nothing is parsed for an unauthenticated request: a key in the header is checked
        # first; a body ``writeKey`` (some batch senders use it) is peeked at on its own.
        source_id = source_for_key(header_key) if header_key else None
        if header_key and source_id is None:
            return _unauthorized()
        try:
            body = _body(request, size_limit())
            if source_id is None:
                source_id = source_for_key(write_key_peek(body) or "")
                if source_id is None:
                    return _unauthorized()
            parsed = parse(body, received_at, _limits())
        except ParseError as exc:
            return _json(400, {"success": False, "errors": [{"index": None, "reason": str(exc)}]})
        try:
            result = events_ingest(
                source_id=source_id, messages=parsed.messages, received_at=received_at
            )
        except IngestBusy as exc:
            # SDKs retry 5xx with backoff; nothing of this batch was stored.
            return _json(503, {"success": False, "error": str(exc)}, Retry_After="1")
        if parsed.errors:
            errors = [{"index": e.index, "reason": e.reason} for e in parsed.errors]
            return _json(400, {"success": False, "accepted": result.accepted, "errors": errors})
        return HttpResponse(_OK, content_type="application/json")

    return view


def _single(call_type: str) -> Callable[[bytes, dt.datetime, Limits], ParsedBatch]:
    def parse(body: bytes, received_at: dt.datetime, limits: Limits) -> ParsedBatch:
        return parse_single(body, call_type, received_at, limits)

    return parse


def _message_limit() -> int:
    return int(settings.INGEST_MAX_MESSAGE_BYTES)


def _batch_limit() -> int:
    return int(settings.INGEST_MAX_BATCH_BYTES)


batch = _endpoint(parse_batch, _batch_limit)
track = _endpoint(_single("track"), _message_limit)
identify = _endpoint(_single("identify"), _message_limit)
group = _endpoint(_single("group"), _message_limit)
alias = _endpoint(_single("alias"), _message_limit)
page = _endpoint(_single("page"), _message_limit)
screen = _endpoint(_single("screen"), _message_limit)
