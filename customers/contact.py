"""Contact-point rules shared by ingestion and hand edits in the admin. Pure functions."""

from __future__ import annotations

import functools
import zoneinfo

import phonenumbers


class InvalidContact(ValueError):
    """A phone number or time zone that cannot be stored; the message says why."""


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone_check(name: str) -> str:
    if name not in _zones():
        raise InvalidContact(f"{name!r} is not an IANA time zone")
    return name


def phone_e164(value: str) -> str:
    """The number in E.164 (``+14155550100``); it must be written internationally."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidContact(
            f"{value!r} is not an international number (E.164, e.g. +14155550100)"
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidContact(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
