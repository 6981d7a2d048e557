"""How many SMS segments a text costs (GSM 03.38 default alphabet, or UCS-2)."""

from __future__ import annotations

import dataclasses

# GSM 03.38 default alphabet (without ESC, which only introduces the extension table).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs two septets (ESC + the character).
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

# (single-segment capacity, capacity per segment of a concatenated message): a concatenated
# segment spends 6 bytes on its header (7 septets, 3 UTF-16 units).
_CAPACITY = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclasses.dataclass(frozen=True)
class SmsSegments:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # septets for GSM-7 (extension characters count 2), UTF-16 units for UCS-2
    segments: int  # 0 for an empty text


def sms_segments(text: str) -> SmsSegments:
    """Encoding, length and segment count of ``text`` as an SMS.

    A two-unit character (a GSM extension character, or a character outside the Basic
    Multilingual Plane in UCS-2) is never split across segments, as carriers do not split
    them either, so a long text may need one more segment than ``ceil(length / 153)``.
    """
    if all(char in GSM_BASIC or char in GSM_EXTENSION for char in text):
        encoding = "GSM-7"
        units = [2 if char in GSM_EXTENSION else 1 for char in text]
    else:
        encoding = "UCS-2"
        units = [2 if ord(char) > 0xFFFF else 1 for char in text]
    characters = sum(units)
    single, per_segment = _CAPACITY[encoding]
    if characters <= single:
        return SmsSegments(encoding, characters, 1 if characters else 0)
    segments, used = 1, 0
    for size in units:
        if used + size > per_segment:
            segments, used = segments + 1, 0
        used += size
    return SmsSegments(encoding, characters, segments)
