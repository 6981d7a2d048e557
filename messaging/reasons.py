"""Reason codes: why a message was not sent (now, or at all). Stable strings, stored on
``Message.reason`` and reported; documented here and nowhere else (DESIGN.md §2.6)."""

from __future__ import annotations

from typing import Final

NO_CONSENT: Final = "no_consent"  # opted out, or unknown in an opt-in region, or pending DOI
SUPPRESSED_ADDRESS: Final = "suppressed_address"  # the address is on the suppression list
UNREACHABLE: Final = "unreachable"  # no address on the channel (no email, phone, token)
FREQUENCY_CAP: Final = "frequency_cap"  # a cap's window is full with earlier messages
CUSTOMER_FREQUENCY: Final = "customer_frequency"  # the customer's own "at most N per period"
CUSTOMER_PAUSED: Final = "customer_paused"  # the customer paused marketing until a date
LOWER_PRIORITY: Final = "lower_priority"  # a higher-priority message took the last slot
QUIET_HOURS_DEFERRED: Final = "quiet_hours_deferred"  # deferred to the quiet window's end
CUSTOMER_INACTIVE: Final = "customer_inactive"  # blocked or erased customer
TOPIC_INACTIVE: Final = "topic_inactive"  # the topic was switched off
TEMPLATE_ERROR: Final = "template_error"  # rendering failed: never a blank send
PROVIDER_REJECTED: Final = "provider_rejected"  # permanent provider error
BAD_ADDRESS: Final = "bad_address"  # hard bounce / invalid or unregistered address
RETRIES_EXHAUSTED: Final = "retries_exhausted"  # transient errors until the last attempt
SEND_UNCONFIRMED: Final = "send_unconfirmed"  # claimed, then the worker died before recording

#: Deferred messages keep being deferred, not dropped: these reasons retry later.
DEFERRING: Final = frozenset({QUIET_HOURS_DEFERRED})

ALL: Final = (
    NO_CONSENT,
    SUPPRESSED_ADDRESS,
    UNREACHABLE,
    FREQUENCY_CAP,
    CUSTOMER_FREQUENCY,
    CUSTOMER_PAUSED,
    LOWER_PRIORITY,
    QUIET_HOURS_DEFERRED,
    CUSTOMER_INACTIVE,
    TOPIC_INACTIVE,
    TEMPLATE_ERROR,
    PROVIDER_REJECTED,
    BAD_ADDRESS,
    RETRIES_EXHAUSTED,
    SEND_UNCONFIRMED,
)
