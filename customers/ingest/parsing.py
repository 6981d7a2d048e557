"""Parse and validate Segment Tracking API payloads. Pure: bytes in, plain data out.

Every bad item becomes an ``ItemError`` naming its index and why; valid items become
``Message``s. msgspec decodes each batch item lazily (``msgspec.Raw``) so one bad item
never spoils its neighbours and per-message size is known without re-encoding.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any, Final

import msgspec
import orjson

from customers.contact import InvalidContact, phone_e164, time_zone_check

CALL_TYPES: Final = frozenset({"track", "page", "screen", "identify", "group", "alias"})
_UTC = dt.UTC


class ParseError(Exception):
    """The request as a whole is unusable (bad JSON envelope, too large)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ItemError:
    index: int
    reason: str


@dataclasses.dataclass(slots=True)
class Message:
    """One valid call, normalised. JSON fields are kept encoded, ready for the database."""

    index: int
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    occurred_at: dt.datetime
    name: str
    properties_json: str
    context_json: str
    traits: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    group_id: str | None = None
    previous_id: str | None = None
    device: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedBatch:
    messages: list[Message]
    errors: list[ItemError]
    write_key: str | None = None


class _Raw(msgspec.Struct, rename="camel"):
    type: str | None = None
    user_id: str | int | None = None
    anonymous_id: str | int | None = None
    message_id: str | None = None
    timestamp: dt.datetime | None = None
    sent_at: dt.datetime | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    group_id: str | int | None = None
    previous_id: str | int | None = None


class _Envelope(msgspec.Struct, rename="camel"):
    batch: list[msgspec.Raw]
    context: dict[str, Any] | None = None
    sent_at: dt.datetime | None = None
    write_key: object = None


class _KeyOnly(msgspec.Struct, rename="camel"):
    # Any type: a malformed writeKey must not fail a request the header authenticates.
    write_key: object = None


_item_decoder: Final = msgspec.json.Decoder(_Raw)
_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
_key_decoder: Final = msgspec.json.Decoder(_KeyOnly)


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    future_tolerance: dt.timedelta = dt.timedelta(minutes=5)


class _Invalid(Exception):
    pass


# How much larger than the request a batch may become once normalised (see _collect).
_EXPANSION = 4


def parse_single(
    body: bytes, call_type: str, received_at: dt.datetime, limits: Limits
) -> ParsedBatch:
    """A ``/v1/<type>`` call: one message, whose type is the URL's."""
    if len(body) > limits.max_message_bytes:
        raise ParseError(
            f"message is {len(body)} bytes; the limit is {limits.max_message_bytes} bytes"
        )
    try:
        write_key = _key(_decode(_key_decoder, body).write_key)
    except _DECODE_ERRORS as exc:
        reason = str(exc) if isinstance(exc, msgspec.DecodeError) else _decode_reason(exc)
        raise ParseError(f"body is not a JSON object: {reason}") from exc
    try:
        raw = _decode(_item_decoder, body)
    except _DECODE_ERRORS as exc:
        return ParsedBatch([], [ItemError(0, _decode_reason(exc))], write_key)
    if raw.type is not None and raw.type != call_type:
        return ParsedBatch(
            [], [ItemError(0, f"type '{raw.type}' does not match /v1/{call_type}")], write_key
        )
    raw.type = call_type
    return _collect([(0, raw)], [], None, None, received_at, limits, write_key)


def parse_batch(body: bytes, received_at: dt.datetime, limits: Limits) -> ParsedBatch:
    """A ``/v1/batch`` call: envelope ``context`` and ``sentAt`` apply to every item."""
    if len(body) > limits.max_batch_bytes:
        raise ParseError(f"batch is {len(body)} bytes; the limit is {limits.max_batch_bytes} bytes")
    try:
        envelope = _decode(_envelope_decoder, body)
    except _DECODE_ERRORS as exc:
        raise ParseError(f"body is not a valid batch: {_decode_reason(exc)}") from exc
    items: list[tuple[int, _Raw]] = []
    errors: list[ItemError] = []
    for index, raw_item in enumerate(envelope.batch):
        if len(raw_item) > limits.max_message_bytes:
            errors.append(
                ItemError(
                    index,
                    f"message is {len(raw_item)} bytes; the limit is "
                    f"{limits.max_message_bytes} bytes",
                )
            )
            continue
        try:
            items.append((index, _item_decoder.decode(raw_item)))
        except _DECODE_ERRORS as exc:
            errors.append(ItemError(index, _decode_reason(exc)))
    return _collect(
        items,
        errors,
        envelope.context,
        envelope.sent_at,
        received_at,
        limits,
        _key(envelope.write_key),
    )


def _collect(
    items: list[tuple[int, _Raw]],
    errors: list[ItemError],
    shared_context: dict[str, Any] | None,
    shared_sent_at: dt.datetime | None,
    received_at: dt.datetime,
    limits: Limits,
    write_key: str | None,
) -> ParsedBatch:
    messages: list[Message] = []
    # The batch-level context is copied into every message: bound what a batch can expand to.
    budget = limits.max_batch_bytes * _EXPANSION
    for index, raw in items:
        try:
            message = _normalise(index, raw, shared_context, shared_sent_at, received_at, limits)
        except _Invalid as exc:
            errors.append(ItemError(index, str(exc)))
            continue
        budget -= len(message.properties_json) + len(message.context_json)
        if budget < 0:
            raise ParseError(
                f"the batch expands to more than {limits.max_batch_bytes * _EXPANSION} bytes "
                "once normalised (a batch-level context is copied into each message)"
            )
        messages.append(message)
    errors.sort(key=lambda error: error.index)
    return ParsedBatch(messages, errors, write_key)


# msgspec raises RecursionError past ~1,000 levels of nesting (orjson refuses > 254 anyway).
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _decode_reason(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return f"wrong type: {text}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8: {text}"
    if isinstance(exc, RecursionError):
        return "JSON is nested too deeply"
    return f"malformed JSON: {text}"


# A \uD800-\uDFFF escape that is not half of a surrogate pair, after an even number of
# backslashes (so it is an escape, not escaped text). JavaScript's JSON.stringify emits them
# when a string is cut through an emoji; the JSON grammar allows them, UTF-8 cannot hold them.
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)((?:\\\\)*)"
    rb"(?:\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<![\\]u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """Decode; on failure, retry once with lone surrogate escapes replaced by U+FFFD."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError:
        if b"\\ud" not in body and b"\\uD" not in body:
            raise
        return decoder.decode(_LONE_SURROGATE.sub(rb"\1\\ufffd", body))


def _key(value: object) -> str | None:
    return value if isinstance(value, str) else None


def write_key_peek(body: bytes) -> str | None:
    """Only the body's ``writeKey``, so a request can be authenticated before it is parsed."""
    try:
        key = _key(_decode(_key_decoder, body).write_key)
    except _DECODE_ERRORS:
        return None
    return key


def _id(value: str | int | None, field: str) -> str | None:
    if value is None:
        return None
    text = _text(str(value).strip(), field)
    if len(text) > 255:
        raise _Invalid(f"{field} is longer than 255 characters")
    return text or None


def _text(value: str, field: str) -> str:
    # PostgreSQL text columns cannot hold NUL; one such item must not fail its batch.
    if "\x00" in value:
        raise _Invalid(f"{field} contains a NUL character (\\u0000), which cannot be stored")
    return value


def _normalise(
    index: int,
    raw: _Raw,
    shared_context: dict[str, Any] | None,
    shared_sent_at: dt.datetime | None,
    received_at: dt.datetime,
    limits: Limits,
) -> Message:
    call_type = raw.type
    if call_type is None:
        raise _Invalid("missing type")
    if call_type not in CALL_TYPES:
        raise _Invalid(f"unknown type '{call_type}'")
    user_id = _id(raw.user_id, "userId")
    anonymous_id = _id(raw.anonymous_id, "anonymousId")
    if call_type == "alias":
        previous_id = _id(raw.previous_id, "previousId")
        if previous_id is None or user_id is None:
            raise _Invalid("alias needs both previousId and userId")
    else:
        previous_id = None
        if user_id is None and anonymous_id is None:
            raise _Invalid("missing userId or anonymousId")
    name = _name(raw, call_type)
    group_id = _id(raw.group_id, "groupId")
    if call_type == "group" and group_id is None:
        raise _Invalid("group needs a groupId")

    context = {**shared_context, **(raw.context or {})} if shared_context else (raw.context or {})
    occurred_at = _occurred_at(raw, shared_sent_at, received_at)
    if occurred_at - received_at > limits.future_tolerance:
        context = {**context, "milepost": {"clampedTimestamp": occurred_at.isoformat()}}
        occurred_at = received_at

    traits = raw.traits
    if call_type == "identify" and traits is None:
        context_traits = context.get("traits")
        traits = context_traits if isinstance(context_traits, dict) else {}
    profile = (
        _profile(traits, account=call_type == "group")
        if call_type in ("identify", "group") and traits
        else None
    )
    if call_type in ("identify", "group"):
        # Traits are stored on the profile and, for the record, in the event's properties.
        properties: dict[str, Any] = traits or {}
    else:
        properties = raw.properties or {}
    if call_type == "page" and raw.category:
        properties = {**properties, "category": raw.category}

    properties_json = _json(properties, "properties")
    context_json = _json(context, "context")
    size = len(properties_json) + len(context_json)
    if shared_context and size > limits.max_message_bytes:
        raise _Invalid(
            f"message is {size} bytes once the batch context is merged in; "
            f"the limit is {limits.max_message_bytes} bytes"
        )
    return Message(
        index=index,
        type=call_type,
        message_id=_message_id(raw.message_id),
        user_id=user_id,
        anonymous_id=anonymous_id,
        occurred_at=occurred_at,
        name=name,
        properties_json=properties_json,
        context_json=context_json,
        traits=traits,
        profile=profile,
        group_id=group_id,
        previous_id=previous_id,
        device=_device(context),
    )


def _name(raw: _Raw, call_type: str) -> str:
    if call_type == "track":
        if not raw.event or not raw.event.strip():
            raise _Invalid("track needs an event name")
        name = raw.event.strip()
    elif call_type in ("page", "screen"):
        name = (raw.name or "").strip()
    else:
        name = ""
    if len(name) > 255:
        raise _Invalid("event name is longer than 255 characters")
    return _text(name, "event name")


def _message_id(value: str | None) -> str:
    # Segment's libraries always send one; without it a replay cannot be recognised.
    if value is None or not value.strip():
        return f"milepost-{uuid.uuid4()}"
    if len(value) > 255:
        raise _Invalid("messageId is longer than 255 characters")
    return _text(value, "messageId")


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def _occurred_at(
    raw: _Raw, shared_sent_at: dt.datetime | None, received_at: dt.datetime
) -> dt.datetime:
    """Segment's skew correction: ``timestamp = receivedAt - (sentAt - timestamp)``."""
    if raw.timestamp is None:
        return received_at
    try:
        timestamp = _aware(raw.timestamp)
        sent_at = raw.sent_at or shared_sent_at
        if sent_at is None:
            return timestamp
        return received_at - (_aware(sent_at) - timestamp)
    except OverflowError as exc:
        # e.g. year 1 with a negative UTC offset, or a sentAt centuries from the timestamp.
        raise _Invalid("timestamp is out of range once corrected to UTC") from exc


_NUL_ESCAPE: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _json(value: dict[str, Any], field: str) -> str:
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        raise _Invalid(f"{field}: {exc}") from exc
    # PostgreSQL's jsonb cannot hold NUL characters. The regex runs only on a hit, and tells a
    # real \u0000 escape from an escaped backslash followed by the text "u0000".
    if b"\\u0000" in encoded and _NUL_ESCAPE.search(encoded):
        raise _Invalid(f"{field} contains a NUL character (\\u0000), which cannot be stored")
    return encoded.decode()


def _device(context: dict[str, Any]) -> tuple[str, str] | None:
    device = context.get("device")
    if not isinstance(device, dict):
        return None
    token = device.get("token")
    if not isinstance(token, str) or not token or len(token) > 512:
        return None
    kind = str(device.get("type", "")).lower()
    platform = {"ios": "ios", "android": "android", "web": "web"}.get(kind)
    return (platform, token) if platform else None


# --- Profile traits ------------------------------------------------------------------------

_PROFILE_TEXT = {"plan": 64, "region": 64, "name": 255, "locale": 35}


def _profile(traits: dict[str, Any], *, account: bool) -> dict[str, Any]:
    """The reserved traits that map onto profile columns, validated. Unknown keys are ignored.

    An account (``group``) has no email, phone, time zone or locale column, so those traits
    stay in its traits unvalidated rather than rejecting the call.
    """
    profile: dict[str, Any] = {}
    for key, limit in _PROFILE_TEXT.items():
        value = traits.get(key)
        if value is None or (account and key == "locale"):
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise _Invalid(f"traits.{key} must be a string of at most {limit} characters")
        profile[key] = value
    created = traits.get("createdAt", traits.get("created_at"))
    if created is not None:
        profile["created_at"] = _created_at(created)
    if (status := traits.get("status")) is not None:
        if status not in ("active", "inactive", "blocked"):
            raise _Invalid("traits.status must be one of active, inactive, blocked")
        profile["status"] = status
    if account:
        return profile
    profile.pop("name", None)  # a customer's name lives in its traits
    if (email := traits.get("email")) is not None:
        profile["email"] = _email(email)
    if (phone := traits.get("phone")) is not None:
        profile["phone"] = _phone(phone)
    zone = traits.get("timezone", traits.get("timeZone"))
    if zone is not None:
        if not isinstance(zone, str):
            raise _Invalid(f"traits.timezone {zone!r} is not an IANA time zone")
        try:
            time_zone_check(zone)
        except InvalidContact as exc:
            raise _Invalid(f"traits.timezone {exc}") from exc
        profile["time_zone"] = zone
    return profile


def _email(value: object) -> str:
    if not isinstance(value, str) or len(value) > 254:
        raise _Invalid("traits.email must be a string of at most 254 characters")
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or " " in value:
        raise _Invalid(f"traits.email {value!r} is not an email address")
    return value


def _phone(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid("traits.phone must be a string")
    try:
        return phone_e164(value)
    except InvalidContact as exc:
        raise _Invalid(f"traits.phone {exc}") from exc


def _created_at(value: object) -> dt.datetime:
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # Unix seconds (some SDKs send createdAt as a number).
            return dt.datetime.fromtimestamp(value, tz=_UTC)
        if isinstance(value, str):
            return _aware(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError, OSError):
        pass  # not a time, or outside the years 1-9999
    raise _Invalid(f"traits.createdAt {value!r} is not an ISO-8601 time")
