"""The send path's signing makes exactly Django's tokens, so Django verifies them."""

from __future__ import annotations

from typing import Any

import time_machine
from django.core import signing

from config import signing as fast_signing

NOW = 1_790_000_000


def test_sign_is_djangos_signer() -> None:
    assert fast_signing.sign("milepost.test", "42.3") == signing.Signer(salt="milepost.test").sign(
        "42.3"
    )


@time_machine.travel(NOW, tick=False)
def test_sign_timestamped_is_djangos_timestamp_signer() -> None:
    assert fast_signing.sign_timestamped("milepost.test", "abc") == signing.TimestampSigner(
        salt="milepost.test"
    ).sign("abc")


@time_machine.travel(NOW, tick=False)
def test_dumps_is_djangos_dumps_and_loads_back() -> None:
    payload = [17, "email", "tips"]
    token = fast_signing.dumps(payload, salt="milepost.consent.unsubscribe")

    assert token == signing.dumps(payload, salt="milepost.consent.unsubscribe")
    assert signing.loads(token, salt="milepost.consent.unsubscribe") == payload


def test_a_new_secret_key_signs_with_the_new_key(settings: Any) -> None:
    before = fast_signing.sign("milepost.test", "1")
    settings.SECRET_KEY = "another-secret-key-for-this-test-only"

    after = fast_signing.sign("milepost.test", "1")

    assert after != before
    assert signing.Signer(salt="milepost.test").unsign(after) == "1"


def test_tokens_signed_before_a_key_rotation_still_verify(settings: Any) -> None:
    old = fast_signing.sign("milepost.test", "7")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-rotated-secret-key-for-this-test"

    assert signing.Signer(salt="milepost.test").unsign(old) == "7"
