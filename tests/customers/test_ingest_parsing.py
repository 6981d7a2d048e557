"""Pure tests of the Segment payload parser: bytes in, ``Message``/``ItemError`` out. No DB."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from customers.ingest.parsing import (
    ItemError,
    Limits,
    Message,
    ParsedBatch,
    ParseError,
    parse_batch,
    parse_single,
)

RECEIVED = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
LIMITS = Limits()


def single(payload: Any, call_type: str = "track", limits: Limits = LIMITS) -> ParsedBatch:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return parse_single(body, call_type, RECEIVED, limits)


def batch(payload: Any, limits: Limits = LIMITS) -> ParsedBatch:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return parse_batch(body, RECEIVED, limits)


def one(payload: Any, call_type: str = "track") -> Message:
    parsed = single(payload, call_type)
    assert parsed.errors == []
    [message] = parsed.messages
    return message


def reason(payload: Any, call_type: str = "track") -> str:
    parsed = single(payload, call_type)
    assert parsed.messages == []
    [error] = parsed.errors
    assert error.index == 0
    return error.reason


# --- Call types ----------------------------------------------------------------------------


def test_it_normalises_a_track_call() -> None:
    message = one(
        {
            "userId": "u1",
            "anonymousId": "a1",
            "messageId": "m1",
            "event": "  Report Created ",
            "properties": {"rows": 3},
            "context": {"ip": "10.0.0.1"},
            "timestamp": "2024-05-01T11:00:00Z",
        }
    )

    assert message == Message(
        index=0,
        type="track",
        message_id="m1",
        user_id="u1",
        anonymous_id="a1",
        occurred_at=dt.datetime(2024, 5, 1, 11, 0, tzinfo=dt.UTC),
        name="Report Created",
        properties_json='{"rows":3}',
        context_json='{"ip":"10.0.0.1"}',
    )


def test_it_takes_the_call_type_from_the_url_when_the_body_has_none() -> None:
    message = one({"userId": "u1", "event": "Signed Up", "messageId": "m1"})

    assert message.type == "track"


def test_it_accepts_a_body_type_that_matches_the_url() -> None:
    message = one({"type": "page", "userId": "u1", "messageId": "m1"}, "page")

    assert message.type == "page"


def test_it_rejects_a_body_type_that_differs_from_the_url() -> None:
    assert (
        reason({"type": "page", "userId": "u1"}, "track") == "type 'page' does not match /v1/track"
    )


def test_it_stores_a_page_category_in_the_properties() -> None:
    message = one(
        {"userId": "u1", "name": " Pricing ", "category": "Docs", "properties": {"path": "/p"}},
        "page",
    )

    assert (message.name, message.properties_json) == (
        "Pricing",
        '{"path":"/p","category":"Docs"}',
    )


def test_it_names_a_screen_call_after_the_screen() -> None:
    message = one({"userId": "u1", "name": "Home", "properties": {"tab": 2}}, "screen")

    assert (message.type, message.name, message.properties_json) == ("screen", "Home", '{"tab":2}')


def test_it_allows_a_page_without_a_name() -> None:
    assert one({"anonymousId": "a1"}, "page").name == ""


def test_it_keeps_identify_traits_as_properties_and_maps_reserved_traits_to_the_profile() -> None:
    traits = {
        "email": " Ada@Example.com ",
        "phone": "+44 20 7946 0958",
        "timezone": "Europe/London",
        "plan": "pro",
        "region": "eu",
        "locale": "en-GB",
        "name": "Ada",
        "createdAt": "2023-01-02T03:04:05Z",
        "status": "inactive",
        "favouriteColour": "green",
    }

    message = one({"userId": "u1", "traits": traits, "properties": {"ignored": 1}}, "identify")

    assert (message.type, message.name) == ("identify", "")
    assert message.traits == traits
    assert orjson.loads(message.properties_json) == traits
    assert message.profile == {
        "plan": "pro",
        "region": "eu",
        "locale": "en-GB",
        "email": "Ada@Example.com",
        "phone": "+442079460958",
        "time_zone": "Europe/London",
        "created_at": dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "status": "inactive",
    }


def test_it_reads_identify_traits_from_the_context_when_the_call_has_none() -> None:
    message = one({"userId": "u1", "context": {"traits": {"plan": "pro"}}}, "identify")

    assert (message.traits, message.profile, message.properties_json) == (
        {"plan": "pro"},
        {"plan": "pro"},
        '{"plan":"pro"}',
    )


def test_it_accepts_an_identify_without_traits() -> None:
    message = one({"userId": "u1"}, "identify")

    assert (message.traits, message.profile, message.properties_json) == ({}, None, "{}")


def test_it_accepts_the_camel_case_time_zone_trait() -> None:
    message = one({"userId": "u1", "traits": {"timeZone": "Asia/Tokyo"}}, "identify")

    assert message.profile == {"time_zone": "Asia/Tokyo"}


def test_it_reads_a_numeric_created_at_as_unix_seconds() -> None:
    message = one({"userId": "u1", "traits": {"createdAt": 1700000000}}, "identify")

    assert message.profile == {"created_at": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)}


def test_it_reads_a_naive_created_at_as_utc() -> None:
    message = one({"userId": "u1", "traits": {"created_at": "2023-01-02T03:04:05"}}, "identify")

    assert message.profile == {"created_at": dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=dt.UTC)}


def test_it_normalises_a_group_call() -> None:
    message = one(
        {"userId": "u1", "groupId": 42, "traits": {"name": "Acme", "plan": "enterprise"}},
        "group",
    )

    assert (message.type, message.group_id, message.name) == ("group", "42", "")
    assert message.properties_json == '{"name":"Acme","plan":"enterprise"}'
    assert message.profile == {"name": "Acme", "plan": "enterprise"}


def test_it_normalises_an_alias_call() -> None:
    message = one({"userId": "new", "previousId": "old", "messageId": "m1"}, "alias")

    assert (message.type, message.user_id, message.previous_id, message.anonymous_id) == (
        "alias",
        "new",
        "old",
        None,
    )


def test_it_turns_numeric_ids_into_strings() -> None:
    message = one({"userId": 17, "anonymousId": 4, "event": "E"})

    assert (message.user_id, message.anonymous_id) == ("17", "4")


def test_it_treats_a_blank_user_id_as_missing() -> None:
    message = one({"userId": "  ", "anonymousId": "a1", "event": "E"})

    assert (message.user_id, message.anonymous_id) == (None, "a1")


def test_it_keeps_the_message_id_sent() -> None:
    assert one({"userId": "u1", "event": "E", "messageId": "ajs-123"}).message_id == "ajs-123"


def test_it_makes_up_a_message_id_when_none_is_sent() -> None:
    first = one({"userId": "u1", "event": "E"}).message_id
    second = one({"userId": "u1", "event": "E", "messageId": " "}).message_id

    assert first.startswith("milepost-")
    assert len(first) == len("milepost-") + 36
    assert second.startswith("milepost-")
    assert first != second


def test_it_reads_the_write_key_from_a_single_call_body() -> None:
    parsed = single({"userId": "u1", "event": "E", "writeKey": "mpw_abc"})

    assert parsed.write_key == "mpw_abc"


# --- Devices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "platform"), [("ios", "ios"), ("Android", "android"), ("WEB", "web")]
)
def test_it_finds_a_push_token_in_the_device_context(kind: str, platform: str) -> None:
    message = one(
        {"userId": "u1", "event": "E", "context": {"device": {"token": "t1", "type": kind}}}
    )

    assert message.device == (platform, "t1")


@pytest.mark.parametrize(
    "device",
    [
        {"token": "t1", "type": "toaster"},
        {"token": "t1"},
        {"token": "", "type": "ios"},
        {"token": 12, "type": "ios"},
        {"token": "x" * 513, "type": "ios"},
        "ios:t1",
    ],
)
def test_it_ignores_a_device_context_without_a_usable_token(device: Any) -> None:
    assert one({"userId": "u1", "event": "E", "context": {"device": device}}).device is None


# --- Time ----------------------------------------------------------------------------------


def test_it_uses_the_received_time_when_there_is_no_timestamp() -> None:
    assert one({"userId": "u1", "event": "E"}).occurred_at == RECEIVED


def test_it_reads_a_naive_timestamp_as_utc() -> None:
    message = one({"userId": "u1", "event": "E", "timestamp": "2024-05-01T10:00:00"})

    assert message.occurred_at == dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)


def test_it_converts_an_offset_timestamp_to_utc() -> None:
    message = one({"userId": "u1", "event": "E", "timestamp": "2024-05-01T12:00:00+02:00"})

    assert message.occurred_at == dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)
    assert message.occurred_at.tzinfo is dt.UTC


def test_it_corrects_a_skewed_client_clock_with_the_message_sent_at() -> None:
    # The client clock is an hour fast: it says it sent at 13:00 what it did at 12:50.
    message = one(
        {
            "userId": "u1",
            "event": "E",
            "timestamp": "2024-05-01T12:50:00Z",
            "sentAt": "2024-05-01T13:00:00Z",
        }
    )

    assert message.occurred_at == dt.datetime(2024, 5, 1, 11, 50, tzinfo=dt.UTC)


def test_it_corrects_batch_items_with_the_batch_sent_at() -> None:
    parsed = batch(
        {
            "sentAt": "2024-05-01T11:00:00Z",
            "batch": [
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "E",
                    "timestamp": "2024-05-01T10:30:00Z",
                },
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "E",
                    "timestamp": "2024-05-01T10:30:00Z",
                    "sentAt": "2024-05-01T10:40:00Z",
                },
            ],
        }
    )

    assert [m.occurred_at for m in parsed.messages] == [
        dt.datetime(2024, 5, 1, 11, 30, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 1, 11, 50, tzinfo=dt.UTC),
    ]


def test_it_clamps_a_timestamp_too_far_in_the_future_and_keeps_the_original() -> None:
    message = one(
        {
            "userId": "u1",
            "event": "E",
            "timestamp": "2024-05-01T12:05:01Z",
            "context": {"ip": "10.0.0.1", "milepost": {"spoofed": True}},
        }
    )

    assert message.occurred_at == RECEIVED
    assert orjson.loads(message.context_json) == {
        "ip": "10.0.0.1",
        "milepost": {"clampedTimestamp": "2024-05-01T12:05:01+00:00"},
    }


def test_it_keeps_a_future_timestamp_within_the_tolerance() -> None:
    message = one({"userId": "u1", "event": "E", "timestamp": "2024-05-01T12:05:00Z"})

    assert message.occurred_at == dt.datetime(2024, 5, 1, 12, 5, tzinfo=dt.UTC)
    assert message.context_json == "{}"


def test_it_clamps_against_the_configured_tolerance() -> None:
    limits = Limits(future_tolerance=dt.timedelta(seconds=10))

    parsed = single(
        {"userId": "u1", "event": "E", "timestamp": "2024-05-01T12:00:11Z"}, limits=limits
    )

    assert parsed.messages[0].occurred_at == RECEIVED


@pytest.mark.parametrize(
    "times",
    [
        {"timestamp": "0001-01-01T00:00:00+01:00"},
        {"timestamp": "9999-12-31T23:59:59-01:00"},
        {"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
    ],
)
def test_it_rejects_a_timestamp_that_leaves_the_calendar_once_corrected(
    times: dict[str, str],
) -> None:
    assert reason({"userId": "u1", "event": "E", **times}) == (
        "timestamp is out of range once corrected to UTC"
    )


# --- Batches -------------------------------------------------------------------------------


def test_it_applies_the_batch_context_under_each_item_context() -> None:
    parsed = batch(
        {
            "context": {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"},
            "writeKey": "mpw_abc",
            "batch": [
                {"type": "track", "userId": "u1", "event": "E", "context": {"ip": "10.0.0.2"}},
                {"type": "page", "anonymousId": "a1"},
            ],
        }
    )

    assert parsed.errors == []
    assert parsed.write_key == "mpw_abc"
    assert [orjson.loads(m.context_json) for m in parsed.messages] == [
        {"library": {"name": "analytics-python"}, "ip": "10.0.0.2"},
        {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"},
    ]
    assert [(m.index, m.type) for m in parsed.messages] == [(0, "track"), (1, "page")]


def test_it_reports_each_bad_batch_item_by_index_and_keeps_the_good_ones() -> None:
    parsed = batch(
        {
            "batch": [
                {"type": "track", "userId": "u1", "event": "Good", "messageId": "m0"},
                5,
                {"userId": "u1", "event": "E"},
                {"type": "bogus", "userId": "u1"},
                {"type": "track", "userId": "u1", "event": "Good", "messageId": "m4"},
                {"type": "track", "userId": "u1", "event": "E", "properties": ["a"]},
            ]
        }
    )

    assert [(m.index, m.message_id) for m in parsed.messages] == [(0, "m0"), (4, "m4")]
    assert parsed.errors == [
        ItemError(1, "wrong type: Expected `object`, got `int`"),
        ItemError(2, "missing type"),
        ItemError(3, "unknown type 'bogus'"),
        ItemError(5, "wrong type: Expected `object | null`, got `array` - at `$.properties`"),
    ]


def test_it_rejects_a_batch_item_over_the_message_limit_and_keeps_the_rest() -> None:
    limits = Limits(max_message_bytes=100)
    big = {"type": "track", "userId": "u1", "event": "E", "properties": {"p": "x" * 100}}
    size = len(orjson.dumps(big))

    parsed = batch({"batch": [big, {"type": "track", "userId": "u1", "event": "E"}]}, limits)

    assert [m.index for m in parsed.messages] == [1]
    assert parsed.errors == [
        ItemError(0, f"message is {size} bytes; the limit is 100 bytes"),
    ]


def test_it_rejects_a_whole_batch_over_the_batch_limit() -> None:
    body = orjson.dumps({"batch": [{"type": "track", "userId": "u1", "event": "E"}] * 10})

    with pytest.raises(ParseError) as error:
        batch(body, Limits(max_batch_bytes=100))

    assert str(error.value) == f"batch is {len(body)} bytes; the limit is 100 bytes"


def test_it_rejects_a_single_call_over_the_message_limit() -> None:
    body = orjson.dumps({"userId": "u1", "event": "E", "properties": {"p": "x" * 100}})

    with pytest.raises(ParseError) as error:
        single(body, limits=Limits(max_message_bytes=100))

    assert str(error.value) == f"message is {len(body)} bytes; the limit is 100 bytes"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "body is not a valid batch: malformed JSON: "),
        (b"[]", "body is not a valid batch: wrong type: Expected `object`, got `array`"),
        (
            b'{"events": []}',
            "body is not a valid batch: wrong type: Object missing required field `batch`",
        ),
        (
            b'{"batch": {}}',
            "body is not a valid batch: wrong type: Expected `array`, got `object` - at `$.batch`",
        ),
        (
            b'{"batch": [], "sentAt": "soon"}',
            "body is not a valid batch: wrong type: Invalid RFC3339 encoded datetime"
            " - at `$.sentAt`",
        ),
    ],
)
def test_it_rejects_an_unusable_batch_envelope(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as error:
        batch(body)

    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "body is not a JSON object: JSON is malformed: object keys must be strings"),
        (b"[1]", "body is not a JSON object: Expected `object`, got `array`"),
        (b'"track"', "body is not a JSON object: Expected `object`, got `str`"),
    ],
)
def test_it_rejects_a_single_call_that_is_not_a_json_object(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as error:
        single(body)

    assert str(error.value).startswith(message)


# --- Invalid items -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_type", "payload", "expected"),
    [
        ("track", {"event": "E"}, "missing userId or anonymousId"),
        (
            "track",
            {"userId": " ", "anonymousId": "", "event": "E"},
            "missing userId or anonymousId",
        ),
        ("track", {"userId": "u1"}, "track needs an event name"),
        ("track", {"userId": "u1", "event": "   "}, "track needs an event name"),
        ("track", {"userId": "u1", "event": "E" * 256}, "event name is longer than 255 characters"),
        ("page", {"userId": "u1", "name": "P" * 256}, "event name is longer than 255 characters"),
        ("track", {"userId": "u" * 256, "event": "E"}, "userId is longer than 255 characters"),
        (
            "track",
            {"userId": "u1", "event": "E", "messageId": "m" * 256},
            ("messageId is longer than 255 characters"),
        ),
        ("group", {"userId": "u1"}, "group needs a groupId"),
        ("group", {"userId": "u1", "groupId": " "}, "group needs a groupId"),
        ("alias", {"userId": "u1"}, "alias needs both previousId and userId"),
        (
            "alias",
            {"previousId": "p1", "anonymousId": "a1"},
            "alias needs both previousId and userId",
        ),
        (
            "track",
            {"userId": True, "event": "E"},
            "wrong type: Expected `int | str | null`, got `bool` - at `$.userId`",
        ),
        (
            "track",
            {"userId": "u1", "event": "E", "properties": [1]},
            "wrong type: Expected `object | null`, got `array` - at `$.properties`",
        ),
        (
            "track",
            {"userId": "u1", "event": "E", "timestamp": "yesterday"},
            "wrong type: Invalid RFC3339 encoded datetime - at `$.timestamp`",
        ),
        (
            "track",
            {"userId": "u1", "event": "E", "timestamp": 1714564800},
            "wrong type: Expected `datetime | null`, got `int` - at `$.timestamp`",
        ),
        (
            "track",
            {"userId": "u1", "event": 7},
            "wrong type: Expected `str | null`, got `int` - at `$.event`",
        ),
        (
            "track",
            {"userId": "u1", "event": "E", "properties": {"note": "a\x00b"}},
            "properties contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            "track",
            {"userId": "u1", "event": "E", "properties": {"a\x00": 1}},
            "properties contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            "track",
            {"userId": "u1", "event": "E", "context": {"page": {"title": "\x00"}}},
            "context contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            "track",
            {"userId": "u1", "event": "E", "properties": {"note": "\\\x00"}},
            "properties contains a NUL character (\\u0000), which cannot be stored",
        ),
    ],
)
def test_it_rejects_an_invalid_call_with_a_reason(
    call_type: str, payload: dict[str, Any], expected: str
) -> None:
    assert reason(payload, call_type) == expected


def test_it_rejects_an_integer_that_does_not_fit_64_bits() -> None:
    body = b'{"userId": "u1", "event": "E", "properties": {"big": 18446744073709551616}}'

    assert reason(body) == "properties: Integer exceeds 64-bit range"


def test_it_rejects_a_number_beyond_the_float_range() -> None:
    body = b'{"userId": "u1", "event": "E", "properties": {"n": 1e400}}'

    assert reason(body) == "wrong type: Number out of range - at `$.properties[...]`"


@pytest.mark.parametrize("text", ["\\u0000", "C:\\\\u0000", "\\\\\\u0000"])
def test_it_accepts_text_that_only_looks_like_a_nul_escape(text: str) -> None:
    message = one({"userId": "u1", "event": "E", "properties": {"path": text}})

    assert orjson.loads(message.properties_json) == {"path": text}


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        (
            {"phone": "555-0100"},
            "traits.phone '555-0100' is not an international number (E.164, e.g. +14155550100)",
        ),
        ({"phone": "+1415555"}, "traits.phone '+1415555' is not a valid phone number"),
        ({"phone": 14155550100}, "traits.phone must be a string"),
        ({"email": "ada.example.com"}, "traits.email 'ada.example.com' is not an email address"),
        ({"email": "ada@localhost"}, "traits.email 'ada@localhost' is not an email address"),
        ({"email": "a da@example.com"}, "traits.email 'a da@example.com' is not an email address"),
        ({"email": 5}, "traits.email must be a string of at most 254 characters"),
        ({"timezone": "Mars/Olympus"}, "traits.timezone 'Mars/Olympus' is not an IANA time zone"),
        ({"timeZone": 3}, "traits.timezone 3 is not an IANA time zone"),
        ({"plan": "p" * 65}, "traits.plan must be a string of at most 64 characters"),
        ({"locale": ["en"]}, "traits.locale must be a string of at most 35 characters"),
        ({"status": "gone"}, "traits.status must be one of active, inactive, blocked"),
        ({"createdAt": "last week"}, "traits.createdAt 'last week' is not an ISO-8601 time"),
        ({"createdAt": True}, "traits.createdAt True is not an ISO-8601 time"),
        ({"createdAt": 1e20}, "traits.createdAt 1e+20 is not an ISO-8601 time"),
        ({"createdAt": -1e15}, "traits.createdAt -1000000000000000.0 is not an ISO-8601 time"),
        (
            {"createdAt": "0001-01-01T00:00:00+01:00"},
            "traits.createdAt '0001-01-01T00:00:00+01:00' is not an ISO-8601 time",
        ),
    ],
)
def test_it_rejects_an_identify_with_an_invalid_reserved_trait(
    traits: dict[str, Any], expected: str
) -> None:
    assert reason({"userId": "u1", "traits": traits}, "identify") == expected


def test_it_validates_group_traits_too() -> None:
    payload = {"userId": "u1", "groupId": "g1", "traits": {"plan": 3}}

    assert reason(payload, "group") == "traits.plan must be a string of at most 64 characters"


def test_it_does_not_validate_profile_traits_on_a_track_call() -> None:
    message = one({"userId": "u1", "event": "E", "traits": {"email": "nope"}})

    assert (message.traits, message.profile) == ({"email": "nope"}, None)


# --- Hostile and broken encodings ----------------------------------------------------------

OK_ITEM = b'{"type":"track","userId":"u","event":"ok","messageId":"m1"}'


@pytest.mark.parametrize(
    ("escape", "mended"),
    [
        (rb"\ud800x", "\ufffdx"),  # a high surrogate without its low half (a cut emoji)
        (rb"x\udc00", "x\ufffd"),  # a low surrogate on its own
        (rb"\ud83d\ude00", "\U0001f600"),  # a real pair is left alone
        (rb"\\ud800", "\\ud800"),  # an escaped backslash: literal text, not an escape
    ],
)
def test_a_lone_surrogate_escape_is_replaced_instead_of_failing_the_batch(
    escape: bytes, mended: str
) -> None:
    body = b'{"batch":[' + OK_ITEM + b',{"type":"track","userId":"u","event":"' + escape
    body += b'","messageId":"m2"}]}'

    parsed = batch(body)

    assert parsed.errors == []
    assert [m.name for m in parsed.messages] == ["ok", mended]


def test_invalid_utf8_in_one_item_fails_only_that_item() -> None:
    body = b'{"batch":[' + OK_ITEM + b',{"type":"track","userId":"u","event":"\xff"}]}'

    parsed = batch(body)

    assert [m.message_id for m in parsed.messages] == ["m1"]
    assert parsed.errors == [
        ItemError(
            1,
            "invalid UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        )
    ]


def test_invalid_utf8_in_a_single_call_is_an_item_error() -> None:
    assert reason(b'{"userId":"u","event":"\xc3("}') == (
        "invalid UTF-8: 'utf-8' codec can't decode byte 0xc3 in position 0: "
        "invalid continuation byte"
    )


def test_a_message_too_large_once_the_batch_context_is_merged_in_is_refused() -> None:
    limits = Limits(max_message_bytes=200)
    payload = {
        "context": {"note": "x" * 150},
        "batch": [
            {"type": "track", "userId": "u", "event": "small", "messageId": "m1"},
            {
                "type": "track",
                "userId": "u",
                "event": "big",
                "messageId": "m2",
                "properties": {"p": "y" * 60},
            },
        ],
    }

    parsed = batch(payload, limits)

    assert [m.message_id for m in parsed.messages] == ["m1"]
    assert parsed.errors == [
        ItemError(
            1, "message is 229 bytes once the batch context is merged in; the limit is 200 bytes"
        )
    ]


def test_a_batch_that_would_expand_past_four_times_its_limit_is_refused_whole() -> None:
    # given: a batch-level context that every one of many tiny items would copy
    limits = Limits(max_message_bytes=32 * 1024, max_batch_bytes=20_000)
    payload = {
        "context": {"note": "x" * 1_000},
        "batch": [{"type": "track", "userId": "u", "event": "e"} for _ in range(100)],
    }

    with pytest.raises(ParseError) as caught:
        batch(payload, limits)

    assert str(caught.value) == (
        "the batch expands to more than 80000 bytes once normalised (a batch-level context is "
        "copied into each message)"
    )


def test_a_group_keeps_company_contact_traits_without_validating_them() -> None:
    message = one(
        {
            "userId": "u1",
            "groupId": "g1",
            "traits": {"name": "Acme", "phone": "020 7946 0958", "email": "sales at acme"},
        },
        "group",
    )

    assert message.profile == {"name": "Acme"}
    assert orjson.loads(message.properties_json)["phone"] == "020 7946 0958"
