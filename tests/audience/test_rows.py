"""The 360's pure wording: consent cells (decided by ``consent.rules``), steps and runs."""

from __future__ import annotations

import datetime as dt

import pytest

from audience.rows import (
    AddressRow,
    ChannelAddresses,
    StepRunRow,
    SuppressionInfo,
    consent_cell,
    last_runs,
    step_type,
    variant_pairs,
)
from consent.selectors import RegionRule

OPT_IN = RegionRule("opt_in", False)
OPT_OUT = RegionRule("opt_out", False)
DOUBLE = RegionRule("opt_out", True)
AT = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("status", "channel", "rule", "label", "note", "state"),
    [
        ("opted_in", "sms", OPT_IN, "Subscribed", "opted in", "subscribed"),
        ("opted_out", "in_app", OPT_OUT, "Unsubscribed", "opted out", "unsubscribed"),
        (
            "pending",
            "email",
            DOUBLE,
            "Unsubscribed",
            "awaiting double opt-in confirmation",
            "unsubscribed",
        ),
        ("unknown", "sms", OPT_IN, "Unknown → unsubscribed", "opt-in region", "unsubscribed"),
        ("unknown", "push", OPT_OUT, "Unknown → subscribed", "opt-out region", "subscribed"),
        (
            "unknown",
            "in_app",
            OPT_IN,
            "Unknown → subscribed",
            "in-app messages need no opt-in",
            "subscribed",
        ),
        (
            "unknown",
            "email",
            DOUBLE,
            "Unknown → unsubscribed",
            "double opt-in region: email needs a confirmed opt-in",
            "unsubscribed",
        ),
        ("unknown", "sms", DOUBLE, "Unknown → subscribed", "opt-out region", "subscribed"),
    ],
)
def test_a_marketing_cell_reads_the_stored_status_through_the_region_rule(
    status: str, channel: str, rule: RegionRule, label: str, note: str, state: str
) -> None:
    cell = consent_cell(channel, status, rule, is_transactional=False)

    assert (cell.label, cell.note, cell.state) == (label, note, state)


def test_a_transactional_cell_needs_no_consent_whatever_is_stored() -> None:
    cell = consent_cell("email", "opted_out", OPT_IN, is_transactional=True)

    assert (cell.label, cell.note, cell.state, cell.is_subscribed) == (
        "Transactional",
        "sent without marketing consent",
        "transactional",
        True,
    )


def test_a_channel_is_suppressed_only_when_every_address_is() -> None:
    blocked = AddressRow("device_token", "ios a", SuppressionInfo("Manual", "", AT))
    free = AddressRow("device_token", "ios b")

    assert ChannelAddresses("push", "Push", (blocked, free), "").is_suppressed is False
    assert ChannelAddresses("push", "Push", (blocked,), "").is_suppressed is True
    assert ChannelAddresses("push", "Push", (), "no active device").is_suppressed is False


def test_a_step_type_is_read_from_the_versions_steps_and_tolerates_bad_data() -> None:
    steps = [{"key": "nudge", "type": "send"}, {"key": "pause", "type": "wait"}, "junk"]

    assert step_type(steps, "pause") == "wait"
    assert step_type(steps, "gone") == ""
    assert step_type(steps, "") == ""
    assert step_type({"not": "a list"}, "pause") == ""


def test_variants_are_sorted_pairs() -> None:
    assert variant_pairs({"split-b": "B", "split-a": "control"}) == (
        ("split-a", "control"),
        ("split-b", "B"),
    )
    assert variant_pairs(None) == ()


def test_the_last_runs_are_kept_in_order_with_a_count_of_the_earlier_ones() -> None:
    runs = [StepRunRow(AT, f"step-{n}", 1, "done", None, "", "") for n in range(7)]

    kept, earlier = last_runs(runs, 5)

    assert [run.step_key for run in kept] == ["step-2", "step-3", "step-4", "step-5", "step-6"]
    assert earlier == 2
    assert last_runs(runs[:2], 5) == (tuple(runs[:2]), 0)
