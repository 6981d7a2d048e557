"""Signed, login-free links: unsubscribe, preference centre, double opt-in confirmation.

A token is ``django.core.signing`` over a compact payload with a purpose-specific salt, so a
preference token cannot be replayed as an unsubscribe token and any tampering is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.conf import settings
from django.core import signing

from config import signing as fast_signing

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"
_PURPOSES = frozenset({UNSUBSCRIBE, PREFERENCES, CONFIRM})
_PATHS = {UNSUBSCRIBE: "/c/u/", PREFERENCES: "/c/p/", CONFIRM: "/c/confirm/"}


class BadToken(Exception):
    """A token that is tampered with, expired, or made for another purpose."""


@dataclasses.dataclass(frozen=True, slots=True)
class LinkClaim:
    customer_id: int
    channel: str = ""
    topic: str = ""  # "" on an unsubscribe: every marketing topic of the channel


def token_make(purpose: str, claim: LinkClaim) -> str:
    if purpose not in _PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    payload = [claim.customer_id, claim.channel, claim.topic]
    return fast_signing.dumps(payload, salt=f"milepost.consent.{purpose}")


def token_read(purpose: str, token: str) -> LinkClaim:
    max_age = dt.timedelta(days=settings.MESSAGING_LINK_MAX_AGE_DAYS)
    try:
        payload = signing.loads(token, salt=f"milepost.consent.{purpose}", max_age=max_age)
    except signing.BadSignature as exc:  # includes SignatureExpired
        raise BadToken(str(exc)) from exc
    if (
        not isinstance(payload, list)
        or len(payload) != 3
        or not isinstance(payload[0], int)
        or not all(isinstance(part, str) for part in payload[1:])
    ):
        raise BadToken("malformed token")
    return LinkClaim(payload[0], payload[1], payload[2])


def link_url(purpose: str, claim: LinkClaim) -> str:
    return f"{settings.PUBLIC_BASE_URL}{_PATHS[purpose]}{token_make(purpose, claim)}"
