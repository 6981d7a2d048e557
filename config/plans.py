"""Statements that PostgreSQL must plan for their values every time.

Connections prepare the statements they repeat (``DATABASE_PREPARE_THRESHOLD``) and, in
``plan_cache_mode=auto``, soon settle on one generic plan per statement. That is right for
almost everything here, but not for a join of an array or JSON parameter to a table
(``JOIN unnest(%s)``, ``UPDATE … FROM jsonb_to_recordset(%s)``): the generic plan cannot
see the parameter, guesses it holds 10 or 100 rows, and while the table has fewer than some
tens of thousands of rows it prefers a hash join over a sequential scan of the whole table
to that many index probes. A connection keeps that plan as the table grows; a small
installation keeps it for good. Measured at 1,000 events/s: the evaluator's progress
lookup took 1.3 ms a batch (40% of the database's time) scanning a 27,000-row table to
find one or two rows. Planned for the actual arrays, each such statement probes its index.

``planned_each_time`` turns preparation off for the statements run inside it; their
planning costs a few tens of microseconds a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def planned_each_time() -> Iterator[None]:
    """Run the statements inside unprepared, each planned for its parameters."""
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    previous = raw.prepare_threshold
    raw.prepare_threshold = None
    try:
        yield
    finally:
        raw.prepare_threshold = previous
