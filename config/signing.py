"""Signing on the send path, byte-compatible with ``django.core.signing``.

Every email carries several signed links (unsubscribe, preferences, a click token per link,
the open pixel). Django's ``Signer`` derives its HMAC key from the salt and ``SECRET_KEY``
and builds a new signer object on every call, which made signing a tenth of the cost of
deciding an email. Here the keyed HMAC is made once per (salt, secret) and copied per
token. The tokens are exactly what ``Signer.sign``, ``TimestampSigner.sign`` and
``signing.dumps`` produce, so verification stays with Django (``Signer.unsign``,
``signing.loads``), including ``SECRET_KEY_FALLBACKS`` after a key rotation.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from typing import Any

from django.conf import settings
from django.core.signing import b62_encode


@functools.lru_cache(maxsize=64)
def _keyed(salt: str, secret: str) -> hmac.HMAC:
    # django.utils.crypto.salted_hmac with Signer's key salt (salt + "signer").
    key = hashlib.sha256((salt + "signer" + secret).encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(salt: str, value: str) -> str:
    """``Signer(salt=salt).sign(value)``."""
    mac = _keyed(salt, settings.SECRET_KEY).copy()
    mac.update(value.encode())
    return f"{value}:{_b64(mac.digest())}"


def sign_timestamped(salt: str, value: str) -> str:
    """``TimestampSigner(salt=salt).sign(value)``."""
    return sign(salt, f"{value}:{b62_encode(int(time.time()))}")


def dumps(obj: Any, salt: str) -> str:
    """``signing.dumps(obj, salt=salt)`` (JSON, uncompressed: the payloads signed here are
    a few dozen bytes, which zlib does not shorten)."""
    data = json.dumps(obj, separators=(",", ":")).encode("latin-1")
    return sign_timestamped(salt, _b64(data))
