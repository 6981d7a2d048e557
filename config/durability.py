"""Asynchronous commit for the pipeline's derived work.

Between an event's ingest and its message's send, evaluation, enrollment and the runner
each commit a transaction whose inputs stay durable until it commits: pending evaluations
are deleted by the evaluation that handles them, due enrollments are moved by the run that
advances them. Waiting for each of those commits to reach the disk cost about a tenth of
an event's end-to-end latency. ``commit_async`` lets such a transaction commit without
waiting for its WAL flush (``SET LOCAL synchronous_commit = off``).

What a PostgreSQL crash can then lose is a suffix of those commits (at most
``wal_writer_delay`` x 3, ~0.6 s), never a middle one, and never anything an external effect
depends on: ingest, sends and notices commit synchronously — a send's claim commits before
the provider is called — and a synchronous commit flushes the WAL up to itself, so every
commit before it is on disk first. A lost suffix is redone from its still-durable inputs
(pending evaluations, due enrollments; the sweeps and the due tick pick them up). A process
crash loses nothing either way. ``DATABASE_ASYNC_COMMIT=0`` turns it off.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection


def commit_async() -> None:
    """Let the current transaction commit without waiting for its WAL flush (PostgreSQL;
    call inside ``transaction.atomic``)."""
    if settings.DATABASE_ASYNC_COMMIT and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
