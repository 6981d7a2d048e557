"""Pure tests of SMS segment counting (GSM 03.38 and UCS-2)."""

from __future__ import annotations

import pytest

from messaging.rendering import SmsSegments, sms_segments
from messaging.rendering.sms import GSM_BASIC, GSM_EXTENSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsSegments("GSM-7", 0, 0)),
        ("Hi Ana!", SmsSegments("GSM-7", 7, 1)),
        ("a" * 160, SmsSegments("GSM-7", 160, 1)),
        ("a" * 161, SmsSegments("GSM-7", 161, 2)),
        ("a" * 306, SmsSegments("GSM-7", 306, 2)),
        ("a" * 307, SmsSegments("GSM-7", 307, 3)),
        ("a" * 459, SmsSegments("GSM-7", 459, 3)),
        ("a" * 460, SmsSegments("GSM-7", 460, 4)),
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", SmsSegments("GSM-7", 44, 1)),
    ],
)
def test_gsm_7_text_is_160_septets_in_one_segment_and_153_per_segment_beyond(
    text: str, expected: SmsSegments
) -> None:
    assert sms_segments(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("€", SmsSegments("GSM-7", 2, 1)),
        ("{}[]~\\|^\f", SmsSegments("GSM-7", 18, 1)),
        ("€" * 80, SmsSegments("GSM-7", 160, 1)),
        ("a" * 159 + "{", SmsSegments("GSM-7", 161, 2)),
        ("€" * 81, SmsSegments("GSM-7", 162, 2)),
        # 306 septets would fit in 2 segments, but the € may not be split across them.
        ("a" * 152 + "€" + "a" * 152, SmsSegments("GSM-7", 306, 3)),
        ("a" * 151 + "€" + "a" * 153, SmsSegments("GSM-7", 306, 2)),
    ],
)
def test_gsm_extension_characters_count_as_two_septets_and_are_never_split(
    text: str, expected: SmsSegments
) -> None:
    assert sms_segments(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ł" * 70, SmsSegments("UCS-2", 70, 1)),
        ("ł" * 71, SmsSegments("UCS-2", 71, 2)),
        ("ł" * 134, SmsSegments("UCS-2", 134, 2)),
        ("ł" * 135, SmsSegments("UCS-2", 135, 3)),
        ("Привет, Ана", SmsSegments("UCS-2", 11, 1)),
        ("ç", SmsSegments("UCS-2", 1, 1)),  # only the capital Ç is in the GSM alphabet
        # one character outside the alphabet turns the whole text into UCS-2
        ("a" * 159 + "ł", SmsSegments("UCS-2", 160, 3)),
        ("€" * 70, SmsSegments("GSM-7", 140, 1)),
        ("€" * 69 + "ł", SmsSegments("UCS-2", 70, 1)),
    ],
)
def test_text_outside_the_gsm_alphabet_is_ucs_2_with_70_units_then_67_per_segment(
    text: str, expected: SmsSegments
) -> None:
    assert sms_segments(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("😀", SmsSegments("UCS-2", 2, 1)),
        ("😀" * 35, SmsSegments("UCS-2", 70, 1)),
        ("a" * 69 + "😀", SmsSegments("UCS-2", 71, 2)),
        ("😀" * 36, SmsSegments("UCS-2", 72, 2)),
        # 134 units would fit in 2 segments, but a surrogate pair may not be split across them.
        ("a" * 66 + "😀" + "a" * 66, SmsSegments("UCS-2", 134, 3)),
    ],
)
def test_an_emoji_counts_as_two_utf_16_units_and_is_never_split(
    text: str, expected: SmsSegments
) -> None:
    assert sms_segments(text) == expected


def test_the_alphabets_have_the_gsm_03_38_sizes() -> None:
    # 128 code points less ESC; the extension table's 9 printable characters plus form feed.
    assert (len(GSM_BASIC), len(GSM_EXTENSION)) == (127, 10)
