"""The Segment-compatible HTTP endpoints under /v1/: wiring, auth, full payloads, errors."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import time_machine
from django.test import Client

from customers.models import Account, Customer, Event, Identity, Source
from customers.services import CreatedKey, source_create

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
EARLIER = "2024-05-01T11:59:00Z"
UNAUTHORIZED = {"success": False, "error": "invalid or missing write key"}
TRACK = {"userId": "u1", "event": "Report Created", "messageId": "m1"}
NUL = "properties contains a NUL character (\\u0000), which cannot be stored"

Post = Callable[..., Any]


@pytest.fixture(autouse=True)
def now() -> Iterator[dt.datetime]:
    with time_machine.travel(NOW, tick=False):
        yield NOW


def stored_events() -> list[dict[str, Any]]:
    return list(
        Event.objects.order_by("id").values(
            "source_id",
            "message_id",
            "type",
            "name",
            "properties",
            "context",
            "occurred_at",
            "received_at",
            "customer__external_id",
            "account__external_id",
        )
    )


def bad_request(reason: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"index": None, "reason": reason}]}


def assert_nothing_stored() -> None:
    assert (Event.objects.count(), Customer.objects.count(), Account.objects.count()) == (0, 0, 0)


# --- Each call type, single and batched ----------------------------------------------------

CALLS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "track": (
        {"userId": "u1", "event": "Report Created", "properties": {"rows": 3}},
        {
            "type": "track",
            "name": "Report Created",
            "properties": {"rows": 3},
            "customer__external_id": "u1",
            "account__external_id": None,
        },
    ),
    "page": (
        {
            "anonymousId": "a1",
            "name": "Pricing",
            "category": "Marketing",
            "properties": {"path": "/pricing"},
        },
        {
            "type": "page",
            "name": "Pricing",
            "properties": {"path": "/pricing", "category": "Marketing"},
            "customer__external_id": None,
            "account__external_id": None,
        },
    ),
    "screen": (
        {"userId": "u1", "name": "Home", "properties": {"tab": "feed"}},
        {
            "type": "screen",
            "name": "Home",
            "properties": {"tab": "feed"},
            "customer__external_id": "u1",
            "account__external_id": None,
        },
    ),
    "identify": (
        {"userId": "u1", "traits": {"email": "ada@example.com", "plan": "pro"}},
        {
            "type": "identify",
            "name": "",
            "properties": {"email": "ada@example.com", "plan": "pro"},
            "customer__external_id": "u1",
            "account__external_id": None,
        },
    ),
    "group": (
        {"userId": "u1", "groupId": "acme", "traits": {"name": "Acme Inc", "seats": 12}},
        {
            "type": "group",
            "name": "",
            "properties": {"name": "Acme Inc", "seats": 12},
            "customer__external_id": "u1",
            "account__external_id": "acme",
        },
    ),
    "alias": (
        {"userId": "u1", "previousId": "a1"},
        {
            "type": "alias",
            "name": "",
            "properties": {},
            "customer__external_id": "u1",
            "account__external_id": None,
        },
    ),
}


@pytest.mark.parametrize("via", ["endpoint", "batch"])
@pytest.mark.parametrize("call_type", sorted(CALLS))
def test_it_stores_each_call_type_with_every_field(
    post: Post, write_key: CreatedKey, call_type: str, via: str
) -> None:
    # given
    fields, expected = CALLS[call_type]
    message = {**fields, "messageId": "m1", "timestamp": EARLIER, "context": {"ip": "10.0.0.1"}}

    # when
    if via == "endpoint":
        response = post(f"/v1/{call_type}", message)
    else:
        response = post("/v1/batch", {"batch": [{"type": call_type, **message}]})

    # then
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert response["Content-Type"] == "application/json"
    assert stored_events() == [
        {
            **expected,
            "source_id": write_key.id,
            "message_id": "m1",
            "context": {"ip": "10.0.0.1"},
            "occurred_at": dt.datetime(2024, 5, 1, 11, 59, tzinfo=dt.UTC),
            "received_at": NOW,
        }
    ]


def test_it_stores_a_mixed_batch_in_order(post: Post) -> None:
    batch = [
        {"type": call_type, **fields, "messageId": f"m{index}"}
        for index, (call_type, (fields, _)) in enumerate(sorted(CALLS.items()))
    ]

    response = post("/v1/batch", {"batch": batch})

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert [(e["message_id"], e["type"], e["customer__external_id"]) for e in stored_events()] == [
        ("m0", "alias", "u1"),
        ("m1", "group", "u1"),
        ("m2", "identify", "u1"),
        # a1 was aliased to u1 at the start of the batch, so its page view is u1's.
        ("m3", "page", "u1"),
        ("m4", "screen", "u1"),
        ("m5", "track", "u1"),
    ]


def test_it_serves_the_short_page_path_and_the_import_path(post: Post) -> None:
    page = post("/v1/p", {"anonymousId": "a1", "name": "Home", "messageId": "m1"})
    imported = post(
        "/v1/import",
        {"batch": [{"type": "track", "userId": "u1", "event": "E", "messageId": "m2"}]},
    )

    assert (page.status_code, imported.status_code) == (200, 200)
    assert [(e["message_id"], e["type"]) for e in stored_events()] == [
        ("m1", "page"),
        ("m2", "track"),
    ]


def test_it_stores_identify_traits_on_the_customer(post: Post) -> None:
    response = post(
        "/v1/identify",
        {
            "userId": "u1",
            "traits": {
                "email": "ada@example.com",
                "phone": "+1 (415) 555-0100",
                "timezone": "America/Los_Angeles",
                "plan": "pro",
                "region": "us-west",
                "locale": "en-US",
                "createdAt": "2023-03-04T05:06:07Z",
                "status": "inactive",
                "name": "Ada Lovelace",
            },
        },
    )

    assert response.status_code == 200
    customer = Customer.objects.get()
    assert (
        customer.external_id,
        customer.email,
        customer.phone,
        customer.time_zone,
        customer.plan,
        customer.region,
        customer.locale,
        customer.created_at,
        customer.status,
    ) == (
        "u1",
        "ada@example.com",
        "+14155550100",
        "America/Los_Angeles",
        "pro",
        "us-west",
        "en-US",
        dt.datetime(2023, 3, 4, 5, 6, 7, tzinfo=dt.UTC),
        "inactive",
    )
    assert customer.traits == {
        "email": "ada@example.com",
        "phone": "+1 (415) 555-0100",
        "timezone": "America/Los_Angeles",
        "plan": "pro",
        "region": "us-west",
        "locale": "en-US",
        "createdAt": "2023-03-04T05:06:07Z",
        "status": "inactive",
        "name": "Ada Lovelace",
    }


def test_it_upserts_the_account_and_links_the_customer_on_group(post: Post) -> None:
    response = post(
        "/v1/group",
        {
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme Inc", "plan": "enterprise", "region": "eu", "seats": 12},
        },
    )

    assert response.status_code == 200
    account = Account.objects.get()
    assert (account.external_id, account.name, account.plan, account.region, account.traits) == (
        "acme",
        "Acme Inc",
        "enterprise",
        "eu",
        {"name": "Acme Inc", "plan": "enterprise", "region": "eu", "seats": 12},
    )
    assert Customer.objects.get().account_id == account.pk


# --- Authentication ------------------------------------------------------------------------


def test_it_accepts_the_write_key_as_a_basic_username(
    client: Client, write_key: CreatedKey
) -> None:
    credentials = base64.b64encode(f"{write_key.key}:".encode()).decode()

    response = client.post(
        "/v1/track",
        TRACK,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert Event.objects.get().source_id == write_key.id


def test_it_accepts_the_write_key_as_a_bearer_token(client: Client, write_key: CreatedKey) -> None:
    response = client.post(
        "/v1/track",
        TRACK,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {write_key.key}",
    )

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert Event.objects.get().source_id == write_key.id


def test_it_accepts_the_write_key_in_the_batch_body(client: Client, write_key: CreatedKey) -> None:
    body = {"writeKey": write_key.key, "batch": [{"type": "track", **TRACK}]}

    response = client.post("/v1/batch", body, content_type="application/json")

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert Event.objects.get().source_id == write_key.id


def test_it_accepts_the_write_key_in_a_single_call_body(
    client: Client, write_key: CreatedKey
) -> None:
    response = client.post(
        "/v1/track", {**TRACK, "writeKey": write_key.key}, content_type="application/json"
    )

    assert response.status_code == 200
    assert Event.objects.get().source_id == write_key.id


def test_it_stores_the_events_under_the_source_whose_key_was_used(post: Post) -> None:
    other = source_create(name="ios app")

    post("/v1/track", TRACK, key=other.key)

    assert Event.objects.get().source_id == other.id


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"mpw_not-a-real-key:").decode(),
        "Basic " + base64.b64encode(b":").decode(),
        "Basic not base64!",
        "Bearer ",
        "Bearer mpw_not-a-real-key",
        "Token mpw_not-a-real-key",
    ],
)
def test_it_rejects_a_missing_or_unknown_key_and_stores_nothing(
    client: Client, write_key: CreatedKey, authorization: str | None
) -> None:
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = client.post("/v1/track", TRACK, content_type="application/json", **headers)

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert response["WWW-Authenticate"] == 'Basic realm="milepost"'
    assert_nothing_stored()


def test_it_rejects_an_unknown_key_in_the_batch_body(client: Client, write_key: CreatedKey) -> None:
    body = {"writeKey": "mpw_not-a-real-key", "batch": [{"type": "track", **TRACK}]}

    response = client.post("/v1/batch", body, content_type="application/json")

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert_nothing_stored()


def test_a_bad_header_key_is_not_rescued_by_a_good_body_key(
    post: Post, write_key: CreatedKey
) -> None:
    body = {"writeKey": write_key.key, "batch": [{"type": "track", **TRACK}]}

    response = post("/v1/batch", body, key="mpw_not-a-real-key")

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert_nothing_stored()


def test_a_bad_header_key_is_refused_before_the_body_is_read(post: Post) -> None:
    response = post("/v1/batch", b"{not json", key="mpw_not-a-real-key")

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert_nothing_stored()


def test_it_rejects_a_deactivated_key_and_stores_nothing(post: Post, write_key: CreatedKey) -> None:
    Source.objects.filter(pk=write_key.id).update(is_active=False)

    response = post("/v1/batch", {"batch": [{"type": "track", **TRACK}]})

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert_nothing_stored()


def test_a_key_deactivated_after_use_is_refused_once_the_key_cache_lapses(
    post: Post, write_key: CreatedKey, settings: Any
) -> None:
    settings.INGEST_KEY_CACHE_SECONDS = 0
    assert post("/v1/track", TRACK).status_code == 200
    Source.objects.filter(pk=write_key.id).update(is_active=False)

    response = post("/v1/track", {**TRACK, "messageId": "m2"})

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert list(Event.objects.values_list("message_id", flat=True)) == ["m1"]


def test_it_allows_only_post(client: Client, write_key: CreatedKey) -> None:
    response = client.get("/v1/track", HTTP_AUTHORIZATION=f"Bearer {write_key.key}")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert_nothing_stored()


# --- Bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        (
            "/v1/track",
            b'{"userId": "u1",',
            "body is not a JSON object: Input data was truncated",
        ),
        ("/v1/track", b"[1, 2]", "body is not a JSON object: Expected `object`, got `array`"),
        (
            "/v1/batch",
            b'{"batch": [}',
            "body is not a valid batch: malformed JSON: JSON is malformed: invalid character"
            " (byte 11)",
        ),
        (
            "/v1/batch",
            b'"batch"',
            "body is not a valid batch: wrong type: Expected `object`, got `str`",
        ),
        (
            "/v1/batch",
            b'{"type": "track", "userId": "u1", "event": "E"}',
            "body is not a valid batch: wrong type: Object missing required field `batch`",
        ),
    ],
)
def test_it_rejects_an_unusable_body_and_stores_nothing(
    post: Post, path: str, body: bytes, reason: str
) -> None:
    response = post(path, body)

    assert (response.status_code, response.json()) == (400, bad_request(reason))
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("path", "message", "reason"),
    [
        (
            "/v1/track",
            {"userId": "u1", "event": "E", "properties": ["a"]},
            "wrong type: Expected `object | null`, got `array` - at `$.properties`",
        ),
        (
            "/v1/track",
            {"userId": "u1", "event": "E", "timestamp": "last tuesday"},
            "wrong type: Invalid RFC3339 encoded datetime - at `$.timestamp`",
        ),
        ("/v1/track", {"event": "E"}, "missing userId or anonymousId"),
        ("/v1/track", {"userId": "u1", "properties": {}}, "track needs an event name"),
        ("/v1/group", {"userId": "u1", "traits": {"name": "Acme"}}, "group needs a groupId"),
        ("/v1/alias", {"userId": "u1"}, "alias needs both previousId and userId"),
        ("/v1/page", {"type": "track", "userId": "u1"}, "type 'track' does not match /v1/page"),
        (
            "/v1/identify",
            {"userId": "u1", "traits": {"phone": "0171 555 0100"}},
            "traits.phone '0171 555 0100' is not an international number (E.164, e.g."
            " +14155550100)",
        ),
        (
            "/v1/identify",
            {"userId": "u1", "traits": {"email": "ada-at-example.com"}},
            "traits.email 'ada-at-example.com' is not an email address",
        ),
        (
            "/v1/identify",
            {"userId": "u1", "traits": {"timezone": "Central Time"}},
            "traits.timezone 'Central Time' is not an IANA time zone",
        ),
        (
            "/v1/track",
            {"userId": "u1", "event": "E", "properties": {"name": "nul\x00"}},
            NUL,
        ),
    ],
)
def test_it_rejects_an_invalid_single_call_with_its_reason_and_stores_nothing(
    post: Post, path: str, message: dict[str, Any], reason: str
) -> None:
    response = post(path, message)

    assert (response.status_code, response.json()) == (
        400,
        {"success": False, "accepted": 0, "errors": [{"index": 0, "reason": reason}]},
    )
    assert_nothing_stored()


def test_it_stores_the_valid_items_of_a_batch_and_reports_the_bad_ones(post: Post) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "Good", "messageId": "m0"},
        "not an object",
        {"userId": "u1", "event": "No Type"},
        {"type": "teleport", "userId": "u1"},
        {"type": "track", "userId": "u1", "properties": {"x": 1}},
        {"type": "identify", "anonymousId": "a1", "messageId": "m5", "traits": {"plan": "pro"}},
        {"type": "group", "userId": "u1"},
        {"type": "alias", "previousId": "a1"},
        {"type": "track", "userId": "u1", "event": "E", "properties": {"n": "\x00"}},
        {"type": "identify", "userId": "u1", "traits": {"timezone": "Nowhere/Land"}},
    ]

    response = post("/v1/batch", {"batch": batch})

    assert (response.status_code, response.json()) == (
        400,
        {
            "success": False,
            "accepted": 2,
            "errors": [
                {"index": 1, "reason": "wrong type: Expected `object`, got `str`"},
                {"index": 2, "reason": "missing type"},
                {"index": 3, "reason": "unknown type 'teleport'"},
                {"index": 4, "reason": "track needs an event name"},
                {"index": 6, "reason": "group needs a groupId"},
                {"index": 7, "reason": "alias needs both previousId and userId"},
                {"index": 8, "reason": NUL},
                {"index": 9, "reason": "traits.timezone 'Nowhere/Land' is not an IANA time zone"},
            ],
        },
    )
    assert [(e["message_id"], e["type"], e["name"]) for e in stored_events()] == [
        ("m0", "track", "Good"),
        ("m5", "identify", ""),
    ]
    assert Account.objects.count() == 0
    assert Customer.objects.get(external_id="u1").time_zone == ""


def test_it_rejects_a_single_call_over_the_message_limit(post: Post) -> None:
    body = orjson.dumps({"userId": "u1", "event": "E", "properties": {"blob": "x" * 32 * 1024}})

    response = post("/v1/track", body)

    assert (response.status_code, response.json()) == (
        400,
        bad_request(f"message is {len(body)} bytes; the limit is 32768 bytes"),
    )
    assert_nothing_stored()


def test_it_rejects_an_oversized_batch_item_and_keeps_the_rest(post: Post, settings: Any) -> None:
    settings.INGEST_MAX_MESSAGE_BYTES = 200
    big = {"type": "track", "userId": "u1", "event": "E", "properties": {"blob": "x" * 200}}
    small = {"type": "track", "userId": "u1", "event": "E", "messageId": "m1"}

    response = post("/v1/batch", {"batch": [small, big]})

    assert (response.status_code, response.json()) == (
        400,
        {
            "success": False,
            "accepted": 1,
            "errors": [
                {
                    "index": 1,
                    "reason": f"message is {len(orjson.dumps(big))} bytes; the limit is 200 bytes",
                }
            ],
        },
    )
    assert [e["message_id"] for e in stored_events()] == ["m1"]


def test_it_rejects_a_batch_over_the_batch_limit_and_stores_nothing(
    post: Post, settings: Any
) -> None:
    settings.INGEST_MAX_BATCH_BYTES = 1000
    body = orjson.dumps(
        {
            "batch": [
                {"type": "track", "userId": "u1", "event": "E", "messageId": f"m{i}"}
                for i in range(30)
            ]
        }
    )

    response = post("/v1/batch", body)

    assert (response.status_code, response.json()) == (
        400,
        bad_request(f"batch is {len(body)} bytes; the limit is 1000 bytes"),
    )
    assert_nothing_stored()


def test_it_answers_a_body_past_djangos_upload_cap_with_a_json_error(
    post: Post, settings: Any
) -> None:
    # Regression: Django's own RequestDataTooBig used to answer with an HTML page.
    settings.INGEST_MAX_BATCH_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2024
    body = orjson.dumps({"batch": [], "context": {"pad": "x" * 3000}})

    response = post("/v1/batch", body)

    assert (response.status_code, response.json()) == (
        400,
        bad_request("body exceeds the limit of 1000 bytes"),
    )
    assert_nothing_stored()


def test_an_out_of_range_time_is_reported_and_its_neighbours_are_stored(post: Post) -> None:
    # Regression: these raised OverflowError, a 500 that lost the whole batch.
    batch = [
        {**TRACK, "type": "track", "timestamp": "0001-01-01T00:00:00+01:00"},
        {**TRACK, "type": "track", "messageId": "m2"},
        {"type": "identify", "userId": "u1", "traits": {"createdAt": 1e20}},
    ]

    response = post("/v1/batch", {"batch": batch})

    assert (response.status_code, response.json()) == (
        400,
        {
            "success": False,
            "accepted": 1,
            "errors": [
                {"index": 0, "reason": "timestamp is out of range once corrected to UTC"},
                {"index": 2, "reason": "traits.createdAt 1e+20 is not an ISO-8601 time"},
            ],
        },
    )
    assert [e["message_id"] for e in stored_events()] == ["m2"]


def test_it_accepts_a_batch_of_exactly_500_kb_by_default(post: Post) -> None:
    # given: 16 items just under 32 KB each, the last one padded to hit the limit exactly
    items = [
        {
            "type": "track",
            "userId": "u1",
            "event": "E",
            "messageId": f"m{i}",
            "properties": {"pad": "x" * 31_900},
        }
        for i in range(16)
    ]
    shortfall = 500 * 1024 - len(orjson.dumps({"batch": items}))
    items[-1]["properties"]["pad"] += "x" * shortfall
    body = orjson.dumps({"batch": items})

    # when
    response = post("/v1/batch", body)

    # then
    assert (len(body), response.status_code) == (500 * 1024, 200)
    assert Event.objects.count() == 16


# --- gzip ----------------------------------------------------------------------------------


def test_it_accepts_a_gzipped_body(post: Post) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", **TRACK}]}))

    response = post("/v1/batch", body, HTTP_CONTENT_ENCODING="gzip")

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert [(e["message_id"], e["name"]) for e in stored_events()] == [("m1", "Report Created")]


def test_it_rejects_a_body_that_claims_to_be_gzip_but_is_not(post: Post) -> None:
    response = post(
        "/v1/batch", {"batch": [{"type": "track", **TRACK}]}, HTTP_CONTENT_ENCODING="gzip"
    )

    assert (response.status_code, response.json()) == (
        400,
        bad_request(
            "body is not valid gzip: Error -3 while decompressing data: incorrect header check"
        ),
    )
    assert_nothing_stored()


def test_it_rejects_a_gzip_bomb_without_inflating_it_all(post: Post, settings: Any) -> None:
    settings.INGEST_MAX_BATCH_BYTES = 10_000
    bomb = gzip.compress(b'{"batch": [], "pad": "' + b" " * 10_000_000 + b'"}')

    response = post("/v1/batch", bomb, HTTP_CONTENT_ENCODING="gzip")

    assert len(bomb) < 20_000
    assert (response.status_code, response.json()) == (
        400,
        bad_request("decompressed body exceeds the limit of 10000 bytes"),
    )
    assert_nothing_stored()


def test_it_applies_the_message_limit_to_a_gzipped_single_call(post: Post, settings: Any) -> None:
    settings.INGEST_MAX_MESSAGE_BYTES = 100
    body = gzip.compress(orjson.dumps({**TRACK, "properties": {"blob": "x" * 100}}))

    response = post("/v1/track", body, HTTP_CONTENT_ENCODING="gzip")

    assert (response.status_code, response.json()) == (
        400,
        bad_request("decompressed body exceeds the limit of 100 bytes"),
    )
    assert_nothing_stored()


# --- Time ----------------------------------------------------------------------------------


def test_it_corrects_client_clock_skew_with_sent_at(post: Post) -> None:
    # given: one client clock 2 hours fast (batch sentAt), one 10 minutes slow (its own sentAt)
    batch = [
        {
            "type": "track",
            "userId": "u1",
            "event": "Fast Clock",
            "messageId": "m1",
            "timestamp": "2024-05-01T13:55:00Z",
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Slow Clock",
            "messageId": "m2",
            "timestamp": "2024-05-01T11:45:00Z",
            "sentAt": "2024-05-01T11:50:00Z",
        },
    ]

    # when
    response = post("/v1/batch", {"sentAt": "2024-05-01T14:00:00Z", "batch": batch})

    # then
    assert response.status_code == 200
    assert [(e["name"], e["occurred_at"]) for e in stored_events()] == [
        ("Fast Clock", dt.datetime(2024, 5, 1, 11, 55, tzinfo=dt.UTC)),
        ("Slow Clock", dt.datetime(2024, 5, 1, 11, 55, tzinfo=dt.UTC)),
    ]


def test_it_uses_the_received_time_when_no_timestamp_is_sent(post: Post) -> None:
    post("/v1/track", TRACK)

    assert [(e["occurred_at"], e["received_at"]) for e in stored_events()] == [(NOW, NOW)]


def test_it_clamps_a_future_timestamp_and_keeps_the_original_in_the_context(
    post: Post, settings: Any
) -> None:
    settings.INGEST_FUTURE_TOLERANCE_SECONDS = 60

    post("/v1/track", {**TRACK, "timestamp": "2024-05-01T12:01:01Z", "context": {"ip": "10.0.0.1"}})

    assert [(e["occurred_at"], e["context"]) for e in stored_events()] == [
        (NOW, {"ip": "10.0.0.1", "milepost": {"clampedTimestamp": "2024-05-01T12:01:01+00:00"}})
    ]


def test_it_keeps_a_future_timestamp_within_the_tolerance(post: Post, settings: Any) -> None:
    settings.INGEST_FUTURE_TOLERANCE_SECONDS = 60

    post("/v1/track", {**TRACK, "timestamp": "2024-05-01T12:01:00Z"})

    assert [(e["occurred_at"], e["context"]) for e in stored_events()] == [
        (dt.datetime(2024, 5, 1, 12, 1, tzinfo=dt.UTC), {})
    ]


# --- Identity over HTTP --------------------------------------------------------------------


def test_it_gives_an_anonymous_visitor_a_customer_and_an_identity(post: Post) -> None:
    post("/v1/page", {"anonymousId": "a1", "name": "Home", "messageId": "m1"})

    customer = Customer.objects.get()
    assert customer.external_id is None
    assert list(Identity.objects.values_list("kind", "value", "customer_id")) == [
        ("anonymous", "a1", customer.pk)
    ]
    assert Event.objects.get().customer_id == customer.pk


@pytest.mark.parametrize(
    ("call", "field", "label"),
    [
        ("track", "event", "event name"),
        ("page", "name", "event name"),
        ("track", "userId", "userId"),
        ("track", "anonymousId", "anonymousId"),
        ("track", "messageId", "messageId"),
        ("group", "groupId", "groupId"),
    ],
)
def test_a_nul_character_in_a_text_field_fails_only_its_own_item(
    post: Post, call: str, field: str, label: str
) -> None:
    bad = {"type": call, "userId": "u1", "event": "E", "groupId": "g1", "messageId": "m1"}
    bad[field] = "a\u0000b"
    good = {"type": "track", "userId": "u2", "event": "Fine", "messageId": "m2"}

    response = post("/v1/batch", {"batch": [bad, good]})

    assert (response.status_code, response.json()) == (
        400,
        {
            "success": False,
            "accepted": 1,
            "errors": [
                {
                    "index": 0,
                    "reason": f"{label} contains a NUL character (\\u0000), which cannot be stored",
                }
            ],
        },
    )
    assert list(Event.objects.values_list("message_id", flat=True)) == ["m2"]


def test_an_unauthenticated_body_is_not_parsed(client: Client) -> None:
    response = client.post("/v1/batch", b"{not json", content_type="application/json")

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert_nothing_stored()


def test_a_batch_that_keeps_colliding_gets_a_503_to_retry(
    post: Post, monkeypatch: pytest.MonkeyPatch
) -> None:
    from customers.ingest import views
    from customers.ingest.service import IngestBusy

    def busy(**kwargs: Any) -> Any:
        raise IngestBusy("the batch collided with concurrent work 3 times")

    monkeypatch.setattr(views, "events_ingest", busy)

    response = post("/v1/track", TRACK)

    assert (response.status_code, response["Retry-After"], response.json()) == (
        503,
        "1",
        {"success": False, "error": "the batch collided with concurrent work 3 times"},
    )


DEEP = b'{"userId":"u","event":"E","properties":{"n":' + b"[" * 1000 + b"]" * 1000 + b"}}"


def test_json_nested_too_deeply_is_a_400_not_a_crash(post: Post) -> None:
    response = post("/v1/track", DEEP)

    assert (response.status_code, response.json()) == (
        400,
        {
            "success": False,
            "errors": [
                {"index": None, "reason": "body is not a JSON object: JSON is nested too deeply"}
            ],
        },
    )
    assert_nothing_stored()


def test_json_nested_too_deeply_without_a_key_is_refused_unread(client: Client) -> None:
    body = b'{"batch":[' + DEEP + b"]}"

    response = client.post("/v1/batch", body, content_type="application/json")

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert_nothing_stored()


def test_a_malformed_body_write_key_does_not_spoil_a_header_authenticated_call(
    post: Post,
) -> None:
    response = post("/v1/track", {**TRACK, "writeKey": 42})

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert Event.objects.count() == 1
