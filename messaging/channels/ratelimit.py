"""Per-provider send rate limits: a token bucket per provider, shared by every worker.

``acquire`` takes one token and returns 0.0, or takes nothing and returns the seconds until a
token will be there. The bucket holds up to ``burst`` tokens and refills at ``per_second``.
With a Redis broker the bucket is a Redis hash updated by one Lua script (atomic across
workers, timed by the Redis server's clock); with any other broker (the demo's filesystem
transport) each process keeps its own bucket.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time

import redis
from django.conf import settings

KEY_PREFIX = "milepost:ratelimit:"

# ARGV: per_second, burst, now ("" = the Redis server's TIME). The key expires once the
# bucket would be full again, which is the same as a fresh bucket.
_BUCKET_SCRIPT = """
local per_second = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local server_time = redis.call('TIME')
  now = tonumber(server_time[1]) + tonumber(server_time[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * per_second)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / per_second
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', at)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / per_second * 1000) + 1000)
return tostring(wait)
"""


@dataclasses.dataclass(slots=True)
class Bucket:
    tokens: float
    at: float


_local_buckets: dict[str, Bucket] = {}
_local_lock = threading.Lock()


def acquire(provider: str, per_second: float, burst: int, *, now: float | None = None) -> float:
    """Take a token for ``provider``: 0.0 when taken, else the seconds to wait before trying
    again. ``now`` (seconds) is for tests; by default Redis's clock, or this process's.
    A Redis error propagates: the sending task fails and is retried like any other."""
    if per_second <= 0 or burst < 1:
        raise ValueError("a rate limit needs per_second > 0 and burst >= 1")
    url = _redis_url()
    if url is None:
        local_now = time.monotonic() if now is None else now
        return _local_acquire(provider, per_second, burst, now=local_now)
    redis_now = "" if now is None else now
    wait = _script_for(url)(keys=[KEY_PREFIX + provider], args=[per_second, burst, redis_now])
    return float(wait)


def acquire_for(provider: str, *, now: float | None = None) -> float:
    """``acquire`` with the provider's ``MESSAGING_RATE_LIMITS`` rate and one second's worth
    of burst; 0.0 for a provider without a limit."""
    per_second = settings.MESSAGING_RATE_LIMITS.get(provider)
    if not per_second:
        return 0.0
    return acquire(provider, per_second, max(1, math.ceil(per_second)), now=now)


def bucket_take(bucket: Bucket, *, now: float, per_second: float, burst: int) -> float:
    """The Lua script's arithmetic, in Python, for the in-process fallback."""
    if now > bucket.at:
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * per_second)
        bucket.at = now
    if bucket.tokens >= 1:
        bucket.tokens -= 1
        return 0.0
    return (1 - bucket.tokens) / per_second


def local_buckets_reset() -> None:
    with _local_lock:
        _local_buckets.clear()


def _local_acquire(provider: str, per_second: float, burst: int, *, now: float) -> float:
    with _local_lock:
        bucket = _local_buckets.setdefault(provider, Bucket(tokens=burst, at=now))
        return bucket_take(bucket, now=now, per_second=per_second, burst=burst)


def _redis_url() -> str | None:
    url: str = settings.CELERY_BROKER_URL
    return url if url.startswith(("redis://", "rediss://")) else None


@functools.cache
def _script_for(url: str) -> redis.commands.core.Script:
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return client.register_script(_BUCKET_SCRIPT)
