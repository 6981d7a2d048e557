"""The customer 360's read model: plain dataclasses, and the pure steps that turn stored values
into what the page says. No ORM here; ``audience.selectors`` reads and fills these in.

Consent is decided by ``consent.rules`` (through ``consent.preferences.is_subscribed``, the
same call the preference centre makes, which the delivery policy's rule is); this module only
words the result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from consent.models import Channel, ConsentMode, SubscriptionStatus
from consent.preferences import is_subscribed
from consent.selectors import RegionRule

_STATUS_NOTES: Final[Mapping[str, str]] = {
    SubscriptionStatus.OPTED_IN: "opted in",
    SubscriptionStatus.OPTED_OUT: "opted out",
    SubscriptionStatus.PENDING: "awaiting double opt-in confirmation",
}


# --- Account ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AccountSummary:
    id: int
    external_id: str
    name: str
    plan: str
    status: str


# --- Consent ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SuppressionInfo:
    reason: str  # as a person reads it: "Hard bounce"
    note: str
    since: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class AddressRow:
    kind: str  # "email" | "phone" | "device_token" | "customer" (in-app)
    label: str  # what the page shows: the address, "ios token …", "in the product"
    suppression: SuppressionInfo | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelAddresses:
    """Where a channel reaches the customer, and which of those addresses are suppressed."""

    channel: str
    label: str
    addresses: tuple[AddressRow, ...]
    missing: str  # what the page says when there is no address: "no phone number"

    @property
    def is_suppressed(self) -> bool:
        """Every address of the channel is suppressed (the policy's ``suppressed_address``)."""
        return bool(self.addresses) and all(a.suppression for a in self.addresses)


@dataclasses.dataclass(frozen=True, slots=True)
class ConsentCell:
    """One topic on one channel: the stored status and what the consent rule makes of it."""

    channel: str
    status: str  # as stored; "unknown" when the customer never chose
    is_subscribed: bool  # effective, under the region's policy (consent.rules)
    is_transactional: bool
    note: str

    @property
    def state(self) -> str:
        """``transactional`` | ``subscribed`` | ``unsubscribed``: a CSS class and a test hook."""
        if self.is_transactional:
            return "transactional"
        return "subscribed" if self.is_subscribed else "unsubscribed"

    @property
    def label(self) -> str:
        if self.is_transactional:
            return "Transactional"
        effective = "subscribed" if self.is_subscribed else "unsubscribed"
        if self.status == SubscriptionStatus.UNKNOWN:
            return f"Unknown → {effective}"
        return effective.capitalize()


@dataclasses.dataclass(frozen=True, slots=True)
class ConsentRow:
    topic_key: str
    topic_name: str
    is_transactional: bool
    cells: tuple[ConsentCell, ...]  # in ``CHANNELS`` order


@dataclasses.dataclass(frozen=True, slots=True)
class PreferenceSummary:
    """The customer's own frequency choice from the preference centre."""

    is_set: bool  # False: never changed, the defaults apply
    max_marketing: int | None
    period_days: int
    paused_until: dt.datetime | None  # None also when a pause has run out
    updated_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class ConsentView:
    region: str
    mode: str  # how "unknown" reads in the region: "opt_in" | "opt_out"
    requires_double_opt_in: bool
    channels: tuple[ChannelAddresses, ...]
    rows: tuple[ConsentRow, ...]
    preference: PreferenceSummary

    @property
    def mode_label(self) -> str:
        return str(ConsentMode(self.mode).label) if self.mode in ConsentMode.values else self.mode


def unknown_note(channel: str, rule: RegionRule) -> str:
    """Why the rule reads "unknown" the way it does on ``channel`` (wording only)."""
    if channel == Channel.IN_APP:
        return "in-app messages need no opt-in"
    if channel == Channel.EMAIL and rule.requires_double_opt_in:
        return "double opt-in region: email needs a confirmed opt-in"
    return "opt-out region" if rule.mode == ConsentMode.OPT_OUT else "opt-in region"


def consent_cell(
    channel: str, status: str, rule: RegionRule, *, is_transactional: bool
) -> ConsentCell:
    if is_transactional:
        return ConsentCell(channel, status, True, True, "sent without marketing consent")
    note = _STATUS_NOTES.get(status) or unknown_note(channel, rule)
    return ConsentCell(channel, status, is_subscribed(status, channel, rule), False, note)


# --- Journeys ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StepRunRow:
    at: dt.datetime
    step_key: str
    attempt: int
    status: str
    message_id: int | None
    message_status: str
    message_channel: str


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollmentRow:
    id: int
    journey_id: int
    journey_name: str
    journey_key: str
    version_number: int
    state: str
    state_label: str
    current_step: str
    current_step_type: str  # "" when the step is not in the version (or finished)
    next_run_at: dt.datetime | None
    entered_at: dt.datetime
    finished_at: dt.datetime | None
    exit_reason: str
    converted_at: dt.datetime | None
    variants: tuple[tuple[str, str], ...]  # (split step, variant), by step
    is_holdout: bool
    runs: tuple[StepRunRow, ...]  # the last few, in the order they ran
    earlier_runs: int  # runs before those shown


def step_type(steps: Any, key: str) -> str:
    """The type of step ``key`` in a version's stored step list ("" if absent or malformed)."""
    if not key or not isinstance(steps, list):
        return ""
    for step in steps:
        if isinstance(step, Mapping) and step.get("key") == key:
            return str(step.get("type") or "")
    return ""


def variant_pairs(variants: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(variants, Mapping):
        return ()
    return tuple(sorted((str(step), str(name)) for step, name in variants.items()))


def last_runs(runs: Sequence[StepRunRow], shown: int) -> tuple[tuple[StepRunRow, ...], int]:
    """The last ``shown`` runs (in the order they ran) and how many came before them."""
    kept = tuple(runs[-shown:]) if shown else ()
    return kept, len(runs) - len(kept)


# --- Messages ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TemplateRef:
    template_id: int
    key: str
    version: int


@dataclasses.dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    created_at: dt.datetime
    channel: str  # as a person reads it: "Email"; "" when the policy chose none
    channels_asked: str  # "Email, SMS", in the order asked
    topic: str
    is_transactional: bool
    # The version rendered on the chosen channel; with none chosen, those asked for.
    templates: tuple[TemplateRef, ...]
    journey_key: str
    status: str
    status_label: str
    status_sentence: str
    reason: str
    reason_sentence: str  # "" for a message without a reason (it went, or waits to)


# --- The page ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Customer360:
    customer_id: int
    label: str
    account: AccountSummary | None
    consent: ConsentView
    enrollments: tuple[EnrollmentRow, ...]  # newest first
    more_enrollments: bool  # older ones exist beyond those shown
    messages: tuple[MessageRow, ...]  # newest first
    more_messages: bool
