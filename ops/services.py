"""Writes of the ops app: the beat heartbeat."""

from __future__ import annotations

import datetime as dt
from typing import Final

from django.utils import timezone

from ops.models import BeatHeartbeat

#: Rows of beat processes that stopped beating this long ago are deleted.
HEARTBEAT_KEEP: Final = dt.timedelta(days=1)


def heartbeat_record(*, origin: str, now: dt.datetime | None = None) -> None:
    """Record that the beat process ``origin`` is scheduling: one upsert (first heartbeat
    kept, latest moved to ``now``), then forget processes silent for ``HEARTBEAT_KEEP`` so
    the table stays a handful of rows however often beat restarts."""
    now = now or timezone.now()
    BeatHeartbeat.objects.bulk_create(
        [BeatHeartbeat(origin=origin, first_at=now, last_at=now)],
        update_conflicts=True,
        unique_fields=["origin"],
        update_fields=["last_at"],
    )
    BeatHeartbeat.objects.filter(last_at__lt=now - HEARTBEAT_KEEP).delete()
