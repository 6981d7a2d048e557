"""Property: for random consent, suppression, cap and clock states, nothing the policy
forbids is ever queued, and what it holds back always carries a reason."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.policy import (
    Address,
    Audience,
    CapRule,
    Held,
    QuietWindow,
    Request,
    Rules,
    decide,
)

BASE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
CHANNELS = ("email", "sms", "push", "in_app")
TOPICS = ("tips", "news")
KINDS = {"email": "email", "sms": "phone", "push": "device_token", "in_app": "customer"}
ZONES = ("", "UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe")

statuses = st.sampled_from(("opted_in", "opted_in", "unknown", "unknown", "opted_out", "pending"))
instants = st.integers(0, 60 * 24 * 30).map(lambda m: BASE + dt.timedelta(minutes=m))


@st.composite
def audiences(draw: st.DrawFn) -> Audience:
    addresses = {
        channel: tuple(
            Address(KINDS[channel], f"{channel}-{i}", f"{channel}-{i}")
            for i in range(draw(st.integers(0, 2)))
        )
        for channel in CHANNELS
    }
    hashes = [(a.kind, a.hash) for found in addresses.values() for a in found]
    now = draw(instants)
    return Audience(
        customer_id=1,
        is_active=draw(st.integers(0, 9)) > 0,
        time_zone=draw(st.sampled_from(ZONES)),
        consent_mode=draw(st.sampled_from(("opt_in", "opt_out"))),
        requires_double_opt_in=draw(st.booleans()),
        # A status for most (channel, topic) pairs, so every status meets every rule often.
        subscriptions={
            (channel, topic): draw(statuses)
            for channel in CHANNELS
            for topic in TOPICS
            if draw(st.integers(0, 4))
        },
        addresses=addresses,
        suppressed=frozenset(h for h in hashes if draw(st.integers(0, 3)) == 0),
        held=tuple(
            Held(
                now - dt.timedelta(minutes=draw(st.integers(1, 60 * 24 * 4))),
                draw(st.sampled_from(CHANNELS)),
                draw(st.sampled_from(TOPICS)),
                draw(st.sampled_from(("", "onboarding"))),
            )
            for _ in range(draw(st.integers(0, 6)))
        ),
        max_marketing=draw(st.none() | st.integers(1, 4)),
        period=dt.timedelta(days=draw(st.integers(1, 7))),
        paused_until=draw(st.sampled_from((None, None, None, now, now + dt.timedelta(days=1)))),
    )


caps = st.builds(
    CapRule,
    scope=st.sampled_from(("marketing", "channel", "journey", "topic")),
    limit=st.integers(0, 4),
    window=st.integers(1, 7 * 24).map(lambda h: dt.timedelta(hours=h)),
    channel=st.sampled_from(CHANNELS),
    topic=st.sampled_from(TOPICS),
    journey=st.just("onboarding"),
)
windows = st.builds(
    QuietWindow,
    starts=st.integers(0, 23).map(lambda h: dt.time(h)),
    ends=st.integers(0, 23).map(lambda h: dt.time(h)),
)
requests = st.builds(
    Request,
    key=st.uuids().map(str),
    customer_id=st.just(1),
    channels=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=4, unique=True).map(tuple),
    topic=st.sampled_from(TOPICS),
    is_transactional=st.booleans(),
    priority=st.integers(0, 3),
    journey=st.sampled_from(("", "onboarding")),
)


def _consents(audience: Audience, channel: str, topic: str) -> bool:
    status = audience.subscriptions.get((channel, topic), "unknown")
    if status == "opted_in":
        return True
    if status in ("opted_out", "pending"):
        return False
    if channel == "in_app":
        return True
    if channel == "email" and audience.requires_double_opt_in:
        return False
    return audience.consent_mode == "opt_out"


def _quiet(window: QuietWindow, zone: str, now: dt.datetime) -> bool:
    clock = now.astimezone(ZoneInfo(zone) if zone else dt.UTC).time().replace(tzinfo=None)
    if window.starts == window.ends:
        return False
    if window.starts < window.ends:
        return window.starts <= clock < window.ends
    return clock >= window.starts or clock < window.ends


@settings(max_examples=600, deadline=None)
@given(
    audience=audiences(),
    batch=st.lists(requests, min_size=1, max_size=6),
    rules_caps=st.lists(caps, max_size=3),
    quiet=st.dictionaries(st.sampled_from(CHANNELS), windows, max_size=2),
)
def test_nothing_the_policy_forbids_is_ever_queued(
    audience: Audience,
    batch: list[Request],
    rules_caps: list[CapRule],
    quiet: dict[str, QuietWindow],
) -> None:
    now = max([h.at for h in audience.held], default=BASE) + dt.timedelta(minutes=1)
    rules = Rules(caps=tuple(rules_caps), quiet_hours=quiet)

    decisions = decide(batch, {1: audience}, rules, now)

    held = list(audience.held)
    order = sorted(range(len(batch)), key=lambda i: -batch[i].priority)
    for index in order:
        request, decision = batch[index], decisions[index]
        assert decision.key == request.key
        if decision.status != "queued":
            assert decision.reason != ""
            continue
        channel = decision.channel
        assert audience.is_active
        assert channel in request.channels
        assert decision.addresses
        for address in decision.addresses:
            assert address in audience.addresses[channel]
            assert (address.kind, address.hash) not in audience.suppressed
        if request.is_transactional:
            continue
        assert _consents(audience, channel, request.topic)
        assert audience.paused_until is None or now >= audience.paused_until
        if audience.max_marketing is not None:
            assert sum(h.at > now - audience.period for h in held) < audience.max_marketing
        for cap in rules_caps:
            if cap.covers(channel, request.topic, request.journey):
                inside = [
                    h
                    for h in held
                    if h.at > now - cap.window and cap.covers(h.channel, h.topic, h.journey)
                ]
                assert len(inside) < cap.limit
        if channel in quiet:
            assert not _quiet(quiet[channel], audience.time_zone, now)
        held.append(Held(now, channel, request.topic, request.journey))
