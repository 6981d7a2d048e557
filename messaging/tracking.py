"""Signed tracking links: a click redirect that only goes to a URL the rendered message
contains (no open redirect), and an open pixel."""

from __future__ import annotations

from django.conf import settings
from django.core import signing

from config import signing as fast_signing

_CLICK = "milepost.messaging.click"
_OPEN = "milepost.messaging.open"


class BadTrackingToken(Exception):
    pass


# Plain signed strings ("<message id>.<index>:<signature>"): a JSON-and-zlib ``dumps``
# costs several times more, and every email carries a few of these.


def click_url(message_id: int, index: int) -> str:
    token = fast_signing.sign(_CLICK, f"{message_id}.{index}")
    return f"{settings.PUBLIC_BASE_URL}/m/c/{token}"


def open_url(message_id: int) -> str:
    token = fast_signing.sign(_OPEN, str(message_id))
    return f"{settings.PUBLIC_BASE_URL}/m/o/{token}.gif"


def click_read(token: str) -> tuple[int, int]:
    """The (message id, link index) a click token names; tracking links do not expire
    with the consent links' age, since an old email's links should keep working."""
    try:
        value = signing.Signer(salt=_CLICK).unsign(token)
        message_id, index = (int(part) for part in value.split("."))
    except (signing.BadSignature, ValueError) as exc:
        raise BadTrackingToken(str(exc)) from exc
    return message_id, index


def open_read(token: str) -> int:
    try:
        return int(signing.Signer(salt=_OPEN).unsign(token))
    except (signing.BadSignature, ValueError) as exc:
        raise BadTrackingToken(str(exc)) from exc
