"""The per-provider token bucket, on real Redis and in-process, with explicit clock values."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from messaging.channels import ratelimit
from messaging.channels.ratelimit import acquire, acquire_for

REDIS_URL = "redis://127.0.0.1:6379/3"
T = 1_000.0


@pytest.fixture
def provider() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    redis.Redis.from_url(REDIS_URL).delete(ratelimit.KEY_PREFIX + name)


@pytest.fixture(params=["redis", "in-process"])
def broker(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.CELERY_BROKER_URL = REDIS_URL if request.param == "redis" else "filesystem://"
    return str(request.param)


def test_a_full_bucket_gives_burst_tokens_then_says_how_long_to_wait(
    broker: str, provider: str
) -> None:
    waits = [acquire(provider, 2.0, 3, now=T) for _ in range(5)]

    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5]


def test_tokens_come_back_at_the_rate(broker: str, provider: str) -> None:
    # given an empty bucket at T
    assert [acquire(provider, 2.0, 3, now=T) for _ in range(3)] == [0.0, 0.0, 0.0]

    # then half a token a quarter second later is not enough, a full one is
    assert acquire(provider, 2.0, 3, now=T + 0.25) == 0.25
    assert acquire(provider, 2.0, 3, now=T + 0.5) == 0.0
    assert acquire(provider, 2.0, 3, now=T + 0.5) == 0.5


def test_a_bucket_never_holds_more_than_burst(broker: str, provider: str) -> None:
    assert acquire(provider, 2.0, 3, now=T) == 0.0

    waits = [acquire(provider, 2.0, 3, now=T + 3600) for _ in range(4)]

    assert waits == [0.0, 0.0, 0.0, 0.5]


def test_a_clock_that_goes_back_adds_no_tokens(broker: str, provider: str) -> None:
    assert [acquire(provider, 1.0, 1, now=T) for _ in range(2)] == [0.0, 1.0]

    assert acquire(provider, 1.0, 1, now=T - 10) == 1.0


def test_providers_have_their_own_buckets(broker: str, provider: str) -> None:
    other = f"{provider}-other"
    try:
        assert [acquire(provider, 1.0, 1, now=T) for _ in range(2)] == [0.0, 1.0]
        assert acquire(other, 1.0, 1, now=T) == 0.0
    finally:
        redis.Redis.from_url(REDIS_URL).delete(ratelimit.KEY_PREFIX + other)


def test_the_redis_bucket_is_one_hash_that_expires_when_it_would_be_full(
    settings: Any, provider: str
) -> None:
    settings.CELERY_BROKER_URL = REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)

    acquire(provider, 2.0, 3, now=T)

    key = ratelimit.KEY_PREFIX + provider
    assert client.hgetall(key) == {b"tokens": b"2", b"at": b"1000"}
    assert 0 < client.pttl(key) <= 2_500  # 3 tokens at 2/s refill in 1.5 s, plus 1 s


def test_concurrent_workers_take_exactly_burst_tokens(settings: Any, provider: str) -> None:
    settings.CELERY_BROKER_URL = REDIS_URL
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            wait = acquire(provider, 0.001, 10, now=T)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(waits) == [0.0] * 10 + [1000.0] * 30


def test_without_a_clock_value_redis_uses_its_own_time(settings: Any, provider: str) -> None:
    settings.CELERY_BROKER_URL = REDIS_URL

    waits = [acquire(provider, 0.001, 2) for _ in range(3)]

    assert waits[:2] == [0.0, 0.0]
    assert 999.0 < waits[2] <= 1000.0


def test_acquire_for_reads_the_providers_rate_from_settings(
    settings: Any, broker: str, provider: str
) -> None:
    settings.MESSAGING_RATE_LIMITS = {provider: 2.0}

    assert [acquire_for(provider, now=T) for _ in range(3)] == [0.0, 0.0, 0.5]


def test_a_provider_without_a_limit_never_waits(settings: Any, broker: str) -> None:
    settings.MESSAGING_RATE_LIMITS = {}

    assert [acquire_for("unlimited", now=T) for _ in range(100)] == [0.0] * 100


@pytest.mark.parametrize(("per_second", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_rate_limit_must_be_positive(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError, match="per_second > 0 and burst >= 1"):
        acquire("sms", per_second, burst, now=T)
