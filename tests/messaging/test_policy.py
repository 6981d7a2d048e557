"""The delivery policy as a pure function: every rule, in its order, without a database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from messaging import reasons
from messaging.policy import (
    Address,
    Audience,
    CapRule,
    Decision,
    Held,
    QuietWindow,
    Request,
    Rules,
    decide,
    quiet_until,
)

NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)  # a Wednesday, noon UTC
DAY = dt.timedelta(days=1)
EMAIL = Address("email", "ada@example.com", "h-email")
PHONE = Address("phone", "+14155550100", "h-phone")
IOS = Address("device_token", "tok-ios", "h-ios", "ios")
ANDROID = Address("device_token", "tok-android", "h-android", "android")
INBOX = Address("customer", "7", "h-inbox")
ALL_ADDRESSES = {"email": (EMAIL,), "sms": (PHONE,), "push": (IOS, ANDROID), "in_app": (INBOX,)}


def audience(**fields: Any) -> Audience:
    fields.setdefault("addresses", ALL_ADDRESSES)
    return Audience(customer_id=7, **fields)


def request(key: str = "m1", **fields: Any) -> Request:
    fields.setdefault("channels", ("email",))
    fields.setdefault("topic", "tips")
    return Request(key=key, customer_id=7, **fields)


def one(
    req: Request, aud: Audience, rules: Rules | None = None, now: dt.datetime = NOW
) -> Decision:
    return decide([req], {aud.customer_id: aud}, rules or Rules(), now)[0]


# --- 1. consent ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "mode", "sent"),
    [
        ("opted_in", "opt_in", True),
        ("opted_in", "opt_out", True),
        ("unknown", "opt_out", True),
        ("unknown", "opt_in", False),
        ("opted_out", "opt_out", False),
        ("pending", "opt_out", False),
    ],
)
def test_marketing_needs_consent_read_by_the_region_policy(
    status: str, mode: str, sent: bool
) -> None:
    aud = audience(subscriptions={("email", "tips"): status}, consent_mode=mode)

    decision = one(request(), aud)

    if sent:
        assert (decision.status, decision.channel, decision.reason) == ("queued", "email", "")
    else:
        assert (decision.status, decision.channel, decision.reason) == (
            "suppressed",
            "",
            "no_consent",
        )


def test_a_missing_subscription_reads_as_unknown() -> None:
    assert one(request(), audience(consent_mode="opt_in")).reason == "no_consent"
    assert one(request(), audience(consent_mode="opt_out")).status == "queued"


def test_a_double_opt_in_region_sends_email_only_on_a_confirmed_opt_in() -> None:
    unconfirmed = audience(consent_mode="opt_out", requires_double_opt_in=True)
    confirmed = dataclasses.replace(unconfirmed, subscriptions={("email", "tips"): "opted_in"})

    assert one(request(), unconfirmed).reason == "no_consent"
    assert one(request(), confirmed).status == "queued"
    # The rule is about email: SMS follows the region's mode.
    assert one(request(channels=("sms",)), unconfirmed).status == "queued"


def test_consent_is_per_channel_and_topic() -> None:
    aud = audience(
        consent_mode="opt_in",
        subscriptions={("email", "news"): "opted_in", ("sms", "tips"): "opted_in"},
    )

    assert one(request(topic="tips"), aud).reason == "no_consent"
    assert one(request(topic="news"), aud).status == "queued"
    assert one(request(topic="tips", channels=("sms",)), aud).channel == "sms"


def test_in_app_needs_no_prior_opt_in_but_respects_an_opt_out() -> None:
    assert one(request(channels=("in_app",)), audience(consent_mode="opt_in")).status == "queued"
    opted_out = audience(subscriptions={("in_app", "tips"): "opted_out"})
    assert one(request(channels=("in_app",)), opted_out).reason == "no_consent"


def test_transactional_bypasses_marketing_consent() -> None:
    aud = audience(consent_mode="opt_in", subscriptions={("email", "receipts"): "opted_out"})

    decision = one(request(topic="receipts", is_transactional=True), aud)

    assert (decision.status, decision.channel) == ("queued", "email")


# --- 2. suppression and 3. reachability ---------------------------------------------------


def test_a_suppressed_address_is_never_sent_to_even_transactional() -> None:
    aud = audience(suppressed=frozenset({("email", "h-email")}))

    assert one(request(), aud).reason == "suppressed_address"
    assert one(request(is_transactional=True), aud).reason == "suppressed_address"


def test_suppression_comes_before_reachability_and_after_consent() -> None:
    suppressed = audience(suppressed=frozenset({("email", "h-email")}), consent_mode="opt_in")
    assert one(request(), suppressed).reason == "no_consent"
    assert one(request(), audience(addresses={})).reason == "unreachable"


def test_a_suppressed_push_token_is_dropped_and_the_others_still_get_the_message() -> None:
    aud = audience(suppressed=frozenset({("device_token", "h-ios")}))

    decision = one(request(channels=("push",)), aud)

    assert (decision.status, decision.addresses) == ("queued", (ANDROID,))


def test_a_customer_without_an_address_on_the_channel_is_unreachable() -> None:
    aud = audience(addresses={"email": (EMAIL,)})

    assert one(request(channels=("sms",)), aud).reason == "unreachable"
    assert one(request(channels=("push",)), aud).reason == "unreachable"


def test_a_blocked_customer_gets_nothing_at_all() -> None:
    decision = one(request(is_transactional=True), audience(is_active=False))

    assert (decision.status, decision.reason, decision.checks) == (
        "suppressed",
        "customer_inactive",
        (),
    )


def test_a_switched_off_topic_sends_nothing() -> None:
    rules = Rules(active_topics=frozenset({"news"}))

    assert one(request(topic="tips"), audience(), rules).reason == "topic_inactive"


# --- 4. channel choice ----------------------------------------------------------------------


def test_the_first_channel_that_passes_is_used_and_every_channel_tried_is_explained() -> None:
    aud = audience(
        subscriptions={("push", "tips"): "opted_out"},
        suppressed=frozenset({("email", "h-email")}),
    )

    decision = one(request(channels=("push", "email", "sms")), aud)

    assert (decision.status, decision.channel, decision.addresses) == ("queued", "sms", (PHONE,))
    assert [(c.channel, c.reason) for c in decision.checks] == [
        ("push", "no_consent"),
        ("email", "suppressed_address"),
        ("sms", ""),
    ]


def test_when_no_channel_passes_the_first_channels_reason_is_recorded() -> None:
    aud = audience(addresses={"sms": (PHONE,)}, subscriptions={("sms", "tips"): "opted_out"})

    decision = one(request(channels=("push", "sms")), aud)

    assert (decision.status, decision.reason) == ("suppressed", "unreachable")
    assert [(c.channel, c.reason) for c in decision.checks] == [
        ("push", "unreachable"),
        ("sms", "no_consent"),
    ]


# --- 5. frequency caps ----------------------------------------------------------------------


def held(hours_ago: float, channel: str = "email", topic: str = "tips", **fields: Any) -> Held:
    return Held(NOW - dt.timedelta(hours=hours_ago), channel, topic, **fields)


def test_a_marketing_cap_counts_earlier_messages_in_its_rolling_window() -> None:
    rules = Rules(caps=(CapRule("marketing", 3, 7 * DAY, name="3 a week"),))
    full = audience(held=(held(1), held(30, "sms"), held(24 * 6.9, "push")))
    aged_out = audience(held=(held(1), held(30, "sms"), held(24 * 7)))

    decision = one(request(), full, rules)

    assert (decision.status, decision.reason) == ("suppressed", "frequency_cap")
    assert decision.checks[0].detail == "3 a week: 3 of 3"
    assert one(request(), aged_out, rules).status == "queued"


def test_transactional_messages_are_exempt_from_caps_and_do_not_count() -> None:
    rules = Rules(caps=(CapRule("marketing", 1, DAY),))
    full = audience(held=(held(1),))

    assert one(request(is_transactional=True), full, rules).status == "queued"
    batch = decide(
        [request("t", is_transactional=True), request("m")],
        {7: audience()},
        rules,
        NOW,
    )
    assert [d.status for d in batch] == ["queued", "queued"]


def test_a_channel_cap_falls_back_to_the_next_channel() -> None:
    rules = Rules(caps=(CapRule("channel", 1, DAY, channel="push"),))
    aud = audience(held=(held(2, "push"),))

    decision = one(request(channels=("push", "email")), aud, rules)

    assert (decision.status, decision.channel) == ("queued", "email")
    assert [(c.channel, c.reason) for c in decision.checks] == [
        ("push", "frequency_cap"),
        ("email", ""),
    ]


def test_topic_and_journey_caps_count_only_their_own_messages() -> None:
    rules = Rules(
        caps=(
            CapRule("topic", 1, DAY, topic="tips"),
            CapRule("journey", 1, DAY, journey="onboarding"),
        )
    )
    aud = audience(held=(held(1, topic="news"), held(2, topic="news", journey="winback")))

    assert one(request(topic="tips", journey="onboarding"), aud, rules).status == "queued"
    tips_full = audience(held=(held(1, topic="tips"),))
    assert one(request(topic="tips"), tips_full, rules).reason == "frequency_cap"
    journey_full = audience(held=(held(1, topic="news", journey="onboarding"),))
    assert one(request(topic="news", journey="onboarding"), journey_full, rules).reason == (
        "frequency_cap"
    )
    assert one(request(topic="news", journey="other"), journey_full, rules).status == "queued"


def test_the_customers_own_frequency_and_pause_apply_to_marketing_on_every_channel() -> None:
    weekly = audience(max_marketing=1, period=7 * DAY, held=(held(24 * 3, "push"),))
    paused = audience(paused_until=NOW + DAY)

    assert one(request(channels=("email", "sms")), weekly).reason == "customer_frequency"
    assert one(request(), paused).reason == "customer_paused"
    assert one(request(), audience(paused_until=NOW)).status == "queued"
    assert one(request(is_transactional=True), paused).status == "queued"


# --- 6. priority ------------------------------------------------------------------------------


def test_the_higher_priority_message_wins_the_last_slot_whatever_the_order() -> None:
    rules = Rules(caps=(CapRule("marketing", 2, DAY),))
    aud = audience(held=(held(1),))

    low, high = decide(
        [request("low", priority=1), request("high", priority=5)], {7: aud}, rules, NOW
    )

    assert (high.status, high.reason) == ("queued", "")
    assert (low.status, low.reason) == ("suppressed", "lower_priority")


def test_equal_priorities_are_weighed_in_the_order_given_and_the_loser_is_capped() -> None:
    rules = Rules(caps=(CapRule("marketing", 1, DAY),))

    first, second = decide([request("a"), request("b")], {7: audience()}, rules, NOW)

    assert (first.status, second.status, second.reason) == (
        "queued",
        "suppressed",
        "frequency_cap",
    )


def test_a_lower_priority_message_can_be_deferred_until_its_slot_frees() -> None:
    rules = Rules(caps=(CapRule("marketing", 2, DAY),), lower_priority_defers=True)
    aud = audience(held=(held(5),))

    low, _high = decide(
        [request("low", priority=0), request("high", priority=9)], {7: aud}, rules, NOW
    )

    assert (low.status, low.reason) == ("deferred", "lower_priority")
    # Two slots held (5 h ago and now): the older one leaves the window first.
    assert low.send_after == NOW - dt.timedelta(hours=5) + DAY


# --- 7. quiet hours ---------------------------------------------------------------------------

NIGHT = QuietWindow(dt.time(21), dt.time(8))


def test_a_message_inside_quiet_hours_is_deferred_to_the_windows_end_in_local_time() -> None:
    rules = Rules(quiet_hours={"sms": NIGHT})
    tokyo = audience(time_zone="Asia/Tokyo")  # noon UTC is 21:00 in Tokyo

    decision = one(request(channels=("sms",)), tokyo, rules)

    assert (decision.status, decision.channel, decision.reason) == (
        "deferred",
        "sms",
        "quiet_hours_deferred",
    )
    assert decision.send_after == dt.datetime(2026, 3, 4, 23, 0, tzinfo=dt.UTC)  # 08:00 JST


def test_quiet_hours_concern_only_their_channel_and_only_marketing() -> None:
    rules = Rules(quiet_hours={"sms": NIGHT})
    tokyo = audience(time_zone="Asia/Tokyo")

    assert one(request(channels=("email",)), tokyo, rules).status == "queued"
    assert one(request(channels=("sms",), is_transactional=True), tokyo, rules).status == "queued"


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-03-04T20:59:59", None),
        ("2026-03-04T21:00:00", "2026-03-05T08:00:00"),
        ("2026-03-04T23:30:00", "2026-03-05T08:00:00"),
        ("2026-03-05T00:00:00", "2026-03-05T08:00:00"),
        ("2026-03-05T07:59:59", "2026-03-05T08:00:00"),
        ("2026-03-05T08:00:00", None),
    ],
)
def test_a_window_across_midnight_has_its_edges_where_the_clock_says(
    local: str, expected: str | None
) -> None:
    zone = "Europe/Paris"
    from zoneinfo import ZoneInfo

    paris = ZoneInfo(zone)
    now = dt.datetime.fromisoformat(local).replace(tzinfo=paris)

    found = quiet_until(NIGHT, zone, now)

    assert found == (
        None if expected is None else dt.datetime.fromisoformat(expected).replace(tzinfo=paris)
    )


def test_a_same_day_window_and_an_empty_window() -> None:
    lunch = QuietWindow(dt.time(12), dt.time(14))
    assert quiet_until(lunch, "", NOW) == NOW + 2 * dt.timedelta(hours=1)
    assert quiet_until(lunch, "", NOW - dt.timedelta(minutes=1)) is None
    assert quiet_until(QuietWindow(dt.time(9), dt.time(9)), "", NOW) is None


def test_the_windows_end_follows_a_dst_change_in_the_customers_zone() -> None:
    # Night of 28-29 March 2026: Paris moves from UTC+1 to UTC+2 at 02:00.
    before = dt.datetime(2026, 3, 28, 22, 0, tzinfo=dt.UTC)  # 23:00 in Paris

    found = quiet_until(NIGHT, "Europe/Paris", before)

    assert found == dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC)  # 08:00 CEST


def test_an_unknown_time_zone_is_read_as_utc() -> None:
    assert quiet_until(NIGHT, "Mars/Olympus", dt.datetime(2026, 3, 4, 22, tzinfo=dt.UTC)) == (
        dt.datetime(2026, 3, 5, 8, tzinfo=dt.UTC)
    )


def test_a_deferred_message_holds_no_slot() -> None:
    rules = Rules(caps=(CapRule("marketing", 1, DAY),), quiet_hours={"sms": NIGHT})
    tokyo = audience(time_zone="Asia/Tokyo")

    sms, email = decide(
        [request("a", channels=("sms",)), request("b", channels=("email",))],
        {7: tokyo},
        rules,
        NOW,
    )

    assert (sms.status, email.status) == ("deferred", "queued")


def test_an_unknown_customer_is_unreachable() -> None:
    assert decide([request()], {}, Rules(), NOW)[0].reason == reasons.UNREACHABLE
