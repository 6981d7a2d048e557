"""Readiness: may this instance take traffic? The database answers, the broker answers within
a second, and exactly one ``celery beat`` is scheduling (its heartbeat is fresh).

``beat_verdict`` is pure; ``readiness`` runs the checks one after another, timing each. No
check can hang the request: the broker's reads are bounded by their timeout, and a failing
check is reported with a short detail (the full error goes to the log), never raised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from ops import selectors
from ops.selectors import Heartbeat, Probe

_HINT = "is `celery beat` running, with a worker on the maintenance queue?"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def is_ready(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.is_ready else "unavailable",
            "checks": {
                check.name: {
                    "ok": check.ok,
                    "detail": check.detail,
                    "duration_ms": round(check.seconds * 1000, 1),
                }
                for check in self.checks
            },
        }


def readiness() -> Readiness:
    """Run every check: the database, the broker, the beat heartbeat."""
    return Readiness(
        checks=(
            _timed("database", selectors.database_ping),
            _timed("broker", selectors.broker_ping),
            _timed("beat", beat_check),
        )
    )


def _timed(name: str, check: Callable[[], Probe]) -> Check:
    started = time.perf_counter()
    probe = check()
    return Check(name=name, ok=probe.ok, detail=probe.detail, seconds=time.perf_counter() - started)


def beat_check() -> Probe:
    try:
        heartbeats = selectors.beat_heartbeats()
    except DatabaseError:
        return Probe(ok=False, detail="heartbeats unreadable: the database is unavailable")
    return beat_verdict(
        heartbeats,
        now=timezone.now(),
        max_age=dt.timedelta(seconds=settings.READYZ_BEAT_MAX_AGE_SECONDS),
    )


def beat_verdict(
    heartbeats: Sequence[Heartbeat], *, now: dt.datetime, max_age: dt.timedelta
) -> Probe:
    """Ok when the latest heartbeat is at most ``max_age`` old and only one beat process
    is sending them.

    Two processes count as running at once when both were heard from within ``max_age``
    and their heartbeats overlapped for more than a third of it (30 s by default, two
    heartbeats): a restart, even one that starts the new beat a little before stopping the
    old one, overlaps less. After one of two beats is stopped the check recovers when the
    stopped one's last heartbeat is ``max_age`` old."""
    if not heartbeats:
        return Probe(ok=False, detail=f"no heartbeat yet: {_HINT}")
    latest = max(heartbeat.last_at for heartbeat in heartbeats)
    age = now - latest
    if age > max_age:
        return Probe(
            ok=False,
            detail=f"last heartbeat {_whole(age)} s ago (max {_whole(max_age)} s): {_HINT}",
        )
    running = _running_at_once(heartbeats, now=now, max_age=max_age)
    if running:
        return Probe(
            ok=False,
            detail=f"{len(running)} beats are scheduling at once ({', '.join(running)}): "
            "run exactly one",
        )
    return Probe(ok=True, detail=f"last heartbeat {_whole(age)} s ago")


def _running_at_once(
    heartbeats: Sequence[Heartbeat], *, now: dt.datetime, max_age: dt.timedelta
) -> list[str]:
    live = sorted(
        (h for h in heartbeats if now - h.last_at <= max_age), key=lambda h: (h.first_at, h.origin)
    )
    tolerance = max_age / 3
    found: set[str] = set()
    for index, one in enumerate(live):
        for other in live[index + 1 :]:
            overlap = min(one.last_at, other.last_at) - max(one.first_at, other.first_at)
            if overlap > tolerance:
                found.update((one.origin, other.origin))
    return sorted(found)


def _whole(duration: dt.timedelta) -> int:
    return int(duration.total_seconds())
