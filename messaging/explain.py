"""Reason codes in plain words, for people answering "why did (or didn't) this customer get
this message". Pure: codes and details in, sentences out.

``reason_sentence`` covers every code in ``messaging.reasons``; ``channel_lines`` reads a
message's ``explanation`` (each channel the policy tried, in priority order) as one sentence
per channel.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from messaging import reasons

_STATUS_WORDS: Final = {
    "opted_in": "opted in",
    "opted_out": "opted out",
    "unknown": "never asked",
    "pending": "awaiting double opt-in confirmation",
}
_MODE_WORDS: Final = {
    "opt_in": "an opt-in region: marketing only after an explicit opt-in",
    "opt_out": "an opt-out region: marketing until the customer opts out",
}
# The policy's consent detail: "<subscription status> (<consent mode> region)".
_CONSENT_DETAIL: Final = re.compile(r"^(?P<status>\w+) \((?P<mode>\w+) region\)$")
_CHANNEL_WORDS: Final = {"email": "Email", "sms": "SMS", "push": "Push", "in_app": "In-app"}


def _consent(detail: str) -> str:
    found = _CONSENT_DETAIL.match(detail)
    if found is None:
        status = detail or "unknown"
    else:
        status = _STATUS_WORDS.get(found["status"], found["status"])
        mode = _MODE_WORDS.get(found["mode"], f"{found['mode']} region")
        status = f"{status}; {mode}"
    return f"No consent for this topic on this channel (status: {status})."


def _with(text: str) -> Callable[[str], str]:
    """A sentence that ends with ``: detail`` when there is a detail."""

    def sentence(detail: str) -> str:
        detail = detail.strip().rstrip(".")
        return f"{text}: {detail}." if detail else f"{text}."

    return sentence


# The policy's cap detail: "<cap name or scope>: <held> of <limit>".
_CAP_DETAIL: Final = re.compile(r"^(?P<name>.+): (?P<held>\d+) of (?P<limit>\d+)$")
_COUNT_DETAIL: Final = re.compile(r"^(?P<held>\d+) of (?P<limit>\d+)$")


def _cap(text: str) -> Callable[[str], str]:
    def sentence(detail: str) -> str:
        found = _CAP_DETAIL.match(detail)
        if found is None:
            return _with(text)(detail)
        return (
            f"{text}: “{found['name']}” already held {found['held']} of its "
            f"{found['limit']} messages in its window."
        )

    return sentence


def _customer_frequency(detail: str) -> str:
    text = "The customer's own limit on marketing messages was reached"
    found = _COUNT_DETAIL.match(detail)
    if found is None:
        return _with(text)(detail)
    return f"{text}: {found['held']} of the {found['limit']} they allow per period already sent."


def _paused(detail: str) -> str:
    # The policy's detail reads "until <time>".
    return (
        f"The customer paused marketing messages {detail}."
        if detail
        else ("The customer paused marketing messages.")
    )


#: One sentence per reason code; a test checks that every code in ``messaging.reasons`` has one.
SENTENCES: Final[Mapping[str, Callable[[str], str]]] = {
    reasons.NO_CONSENT: _consent,
    reasons.SUPPRESSED_ADDRESS: _with(
        "The address is on the suppression list (a bounce, complaint, unsubscribe, manual or "
        "legal hold), so nothing is sent to it"
    ),
    reasons.UNREACHABLE: _with(
        "No address on this channel: no email address, no phone number or no active device"
    ),
    reasons.FREQUENCY_CAP: _cap("A frequency cap was full"),
    reasons.CUSTOMER_FREQUENCY: _customer_frequency,
    reasons.CUSTOMER_PAUSED: _paused,
    reasons.LOWER_PRIORITY: _cap("A higher-priority message took the last free slot of a cap"),
    reasons.QUIET_HOURS_DEFERRED: _with("Deferred by quiet hours in the customer's time zone"),
    reasons.CUSTOMER_INACTIVE: _with("The customer is blocked or erased"),
    reasons.TOPIC_INACTIVE: _with("The message's topic is switched off"),
    reasons.TEMPLATE_ERROR: _with(
        "The template failed to render for this customer, so nothing was sent"
    ),
    reasons.PROVIDER_REJECTED: _with("The provider refused the message for good"),
    reasons.BAD_ADDRESS: _with(
        "The address bounced or is invalid, and was added to the suppression list"
    ),
    reasons.RETRIES_EXHAUSTED: _with(
        "Every attempt failed with a temporary error, up to the last one allowed"
    ),
    reasons.SEND_UNCONFIRMED: _with(
        "The worker stopped between handing the message to the provider and recording the "
        "result: it may or may not have reached the customer"
    ),
}


def reason_sentence(code: str, detail: str = "") -> str:
    """``code`` (a reason from ``messaging.reasons``, or "" for none) as a plain sentence."""
    if not code:
        return "Passed every check."
    sentence = SENTENCES.get(code)
    if sentence is None:
        return _with(f"Unrecognised reason “{code}”")(detail)
    return sentence(detail)


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelLine:
    channel: str  # as a person reads it: "Email", "SMS", ...
    sentence: str
    is_chosen: bool


def channel_label(channel: str) -> str:
    return _CHANNEL_WORDS.get(channel, channel or "—")


def channel_lines(explanation: Any, chosen: str) -> list[ChannelLine]:
    """One line per channel tried, in the order the policy tried them. ``explanation`` is
    ``Message.explanation`` (a list of ``{channel, reason, detail}``); anything else in it is
    skipped rather than trusted."""
    items: Sequence[Any] = explanation if isinstance(explanation, list) else []
    lines = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        channel = str(item.get("channel") or "")
        code = str(item.get("reason") or "")
        detail = str(item.get("detail") or "")
        is_chosen = not code and channel == chosen
        sentence = (
            "Passed every check; this channel was chosen."
            if is_chosen
            else reason_sentence(code, detail)
        )
        lines.append(ChannelLine(channel_label(channel), sentence, is_chosen))
    return lines


#: Reasons recorded after the decision, by sending: their detail is the message's error.
_SEND_FAILURES: Final = frozenset(
    {
        reasons.TEMPLATE_ERROR,
        reasons.PROVIDER_REJECTED,
        reasons.BAD_ADDRESS,
        reasons.RETRIES_EXHAUSTED,
    }
)


def message_reason(reason: str, explanation: Any, *, error: str = "", until: str = "") -> str:
    """The sentence for a message's own ``reason`` ("" for none), with its detail from where
    it is kept: a send failure's ``error``, or the policy check that gave the reason. A
    deferred message says ``until`` when it is weighed again."""
    if not reason:
        return ""
    detail = error if reason in _SEND_FAILURES else _check_detail(reason, explanation)
    sentence = reason_sentence(reason, detail)
    return f"{sentence} It is weighed again at {until}." if until else sentence


def _check_detail(reason: str, explanation: Any) -> str:
    items: Sequence[Any] = explanation if isinstance(explanation, list) else []
    for item in items:
        if isinstance(item, Mapping) and item.get("reason") == reason:
            return str(item.get("detail") or "")
    return ""


#: What each message status means, for the top of the "why" panel.
STATUS_SENTENCES: Final[Mapping[str, str]] = {
    "queued": "The policy let it go; it waits for its channel's send task.",
    "deferred": "Held back for now; the policy weighs it again later.",
    "suppressed": "Not sent: the policy stopped it.",
    "sending": "Handed to the provider; the result is not recorded yet.",
    "sent": "Sent: the provider accepted it.",
    "delivered": "Delivered to the customer.",
    "bounced": "Sent, but it bounced.",
    "failed": "Not sent: sending failed.",
    "opened": "Delivered and opened.",
    "clicked": "Delivered, and a link in it was clicked.",
    "complained": "Delivered; the customer reported it as spam.",
    "unconfirmed": "Sending started but was never confirmed.",
}


def status_sentence(status: str) -> str:
    return STATUS_SENTENCES.get(status, f"Status “{status}”.")
