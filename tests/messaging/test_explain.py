"""Reason codes and statuses in plain words (pure: no database)."""

from __future__ import annotations

import pytest

from messaging import explain, reasons
from messaging.explain import (
    ChannelLine,
    channel_lines,
    message_reason,
    reason_sentence,
    status_sentence,
)
from messaging.models import MessageStatus


def _codes_defined_in_reasons() -> set[str]:
    return {
        value for name, value in vars(reasons).items() if name.isupper() and isinstance(value, str)
    }


def test_every_reason_code_is_listed_in_all() -> None:
    assert set(reasons.ALL) == _codes_defined_in_reasons()


@pytest.mark.parametrize("code", reasons.ALL)
def test_every_reason_code_has_its_own_sentence(code: str) -> None:
    sentence = reason_sentence(code)

    assert code in explain.SENTENCES
    assert "Unrecognised" not in sentence
    assert sentence.endswith(".")
    assert sentence[0].isupper()


def test_the_sentences_cover_exactly_the_documented_codes() -> None:
    assert set(explain.SENTENCES) == set(reasons.ALL)


@pytest.mark.parametrize("status", MessageStatus.values)
def test_every_message_status_has_a_sentence(status: str) -> None:
    assert status_sentence(status) == explain.STATUS_SENTENCES[status]


@pytest.mark.parametrize(
    ("code", "detail", "expected"),
    [
        (
            reasons.NO_CONSENT,
            "opted_out (opt_out region)",
            "No consent for this topic on this channel (status: opted out; an opt-out region: "
            "marketing until the customer opts out).",
        ),
        (
            reasons.NO_CONSENT,
            "unknown (opt_in region)",
            "No consent for this topic on this channel (status: never asked; an opt-in region: "
            "marketing only after an explicit opt-in).",
        ),
        (
            reasons.NO_CONSENT,
            "pending (opt_in region)",
            "No consent for this topic on this channel (status: awaiting double opt-in "
            "confirmation; an opt-in region: marketing only after an explicit opt-in).",
        ),
        (
            reasons.NO_CONSENT,
            "",
            "No consent for this topic on this channel (status: unknown).",
        ),
        (
            reasons.FREQUENCY_CAP,
            "3 emails a week: 3 of 3",
            "A frequency cap was full: “3 emails a week” already held 3 of its 3 messages in "
            "its window.",
        ),
        (
            reasons.FREQUENCY_CAP,
            "",
            "A frequency cap was full.",
        ),
        (
            reasons.LOWER_PRIORITY,
            "marketing: 2 of 2",
            "A higher-priority message took the last free slot of a cap: “marketing” already "
            "held 2 of its 2 messages in its window.",
        ),
        (
            reasons.CUSTOMER_FREQUENCY,
            "4 of 4",
            "The customer's own limit on marketing messages was reached: 4 of the 4 they "
            "allow per period already sent.",
        ),
        (
            reasons.CUSTOMER_PAUSED,
            "until 2026-03-06T09:00:00+00:00",
            "The customer paused marketing messages until 2026-03-06T09:00:00+00:00.",
        ),
        (
            reasons.TEMPLATE_ERROR,
            "html: line 1: 'plan' is undefined.",
            "The template failed to render for this customer, so nothing was sent: html: "
            "line 1: 'plan' is undefined.",
        ),
        (
            reasons.SUPPRESSED_ADDRESS,
            "",
            "The address is on the suppression list (a bounce, complaint, unsubscribe, manual "
            "or legal hold), so nothing is sent to it.",
        ),
    ],
)
def test_a_reason_reads_its_detail_into_the_sentence(code: str, detail: str, expected: str) -> None:
    assert reason_sentence(code, detail) == expected


def test_no_reason_means_every_check_passed() -> None:
    assert reason_sentence("") == "Passed every check."


def test_an_unknown_code_is_named_rather_than_hidden() -> None:
    assert reason_sentence("moon_phase", "waning") == "Unrecognised reason “moon_phase”: waning."


def test_each_channel_tried_gets_a_line_and_the_chosen_one_says_so() -> None:
    explanation = [
        {"channel": "push", "reason": "unreachable", "detail": ""},
        {"channel": "email", "reason": "no_consent", "detail": "opted_out (opt_out region)"},
        {"channel": "sms", "reason": "", "detail": ""},
    ]

    lines = channel_lines(explanation, "sms")

    assert lines == [
        ChannelLine("Push", reason_sentence(reasons.UNREACHABLE), is_chosen=False),
        ChannelLine(
            "Email",
            reason_sentence(reasons.NO_CONSENT, "opted_out (opt_out region)"),
            is_chosen=False,
        ),
        ChannelLine("SMS", "Passed every check; this channel was chosen.", is_chosen=True),
    ]


@pytest.mark.parametrize("explanation", [None, {}, "text", [1, "x", None]])
def test_a_malformed_explanation_gives_no_lines(explanation: object) -> None:
    assert channel_lines(explanation, "email") == []


def test_a_message_reason_takes_its_detail_from_the_check_that_gave_it() -> None:
    explanation = [
        {"channel": "email", "reason": "frequency_cap", "detail": "weekly: 3 of 3"},
        {"channel": "sms", "reason": "no_consent", "detail": "opted_out (opt_out region)"},
    ]

    assert message_reason("frequency_cap", explanation) == reason_sentence(
        "frequency_cap", "weekly: 3 of 3"
    )


def test_a_send_failure_takes_its_detail_from_the_error() -> None:
    sentence = message_reason("provider_rejected", [], error="account suspended")

    assert sentence == "The provider refused the message for good: account suspended."


def test_a_deferred_message_says_when_it_is_weighed_again() -> None:
    sentence = message_reason("quiet_hours_deferred", [], until="2026-03-06 08:00 UTC")

    assert sentence == (
        "Deferred by quiet hours in the customer's time zone. It is weighed again at "
        "2026-03-06 08:00 UTC."
    )


def test_no_reason_gives_no_message_sentence() -> None:
    assert message_reason("", [{"channel": "email", "reason": "", "detail": ""}]) == ""
