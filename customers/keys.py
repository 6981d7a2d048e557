"""Secret keys shown once and stored as a SHA-256 hash.

Keys carry 256 bits of randomness, so a fast hash is safe (no dictionary to attack) and
keeps the per-request lookup to one indexed equality match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets


@dataclasses.dataclass(frozen=True, slots=True)
class NewKey:
    key: str
    prefix: str
    digest: str


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_generate(kind: str) -> NewKey:
    key = f"{kind}_{secrets.token_urlsafe(32)}"
    return NewKey(key=key, prefix=key[: len(kind) + 5], digest=key_digest(key))
