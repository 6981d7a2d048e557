"""Identifier locks: how ingestion and merges stay consistent without per-row FK checks.

``Event`` has no database-level foreign keys: on an append-only table taking ~40k rows/s,
the per-row deferred FK trigger (a ``SELECT … FOR KEY SHARE`` on the parent per event)
cost about a third of ingest throughput (bench/ingest.py, 21k vs 29k events/s). The one
race those checks guarded is an ingest batch inserting events for a customer that a
concurrent merge is deleting. Transaction-scoped advisory locks on identifier buckets
close it instead: a batch takes the buckets of every userId/anonymousId it carries in
shared mode *before* resolving them; a merge takes the buckets of the source customer's
identifiers exclusively. So a merge waits for in-flight batches naming those ids, and a
batch that starts after it resolves the ids to the merge's target. Advisory locks live in
memory only — no tuple writes, no WAL — and a batch holds at most ``BUCKETS`` of them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from django.db import connection

_NAMESPACE = 0x4D50  # "MP"
BUCKETS = 64


def identifier_buckets(identifiers: Iterable[str]) -> list[int]:
    return sorted({zlib.crc32(value.encode()) % BUCKETS for value in identifiers})


def identifiers_lock(identifiers: Iterable[str], *, exclusive: bool) -> None:
    """Lock the buckets of ``identifiers`` until the current transaction ends.

    Buckets are taken in ascending order so batches never deadlock each other. A no-op
    off PostgreSQL (SQLite, the embedded demo database, serialises writers anyway).
    """
    if connection.vendor != "postgresql":
        return
    buckets = identifier_buckets(identifiers)
    if not buckets:
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        # unnest keeps the array's (ascending) order, so locks are taken in that order.
        cursor.execute(
            f"SELECT count({function}(%s, bucket)) FROM unnest(%s::int[]) AS bucket",  # noqa: S608
            [_NAMESPACE, buckets],
        )
