"""Reads of a recent window of an append-only table (events, messages, outcomes).

Rows get ids in the order they are made, so the newest row older than a window's start,
found by walking the primary key backwards from the newest row, bounds the window by id:
a count or GROUP BY over ``pk > that id`` reads the window's rows only, however large the
table, without an index on the timestamp.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Model

from config.plans import planned_each_time


def newest_id_before(model: type[Model], field: str, since: dt.datetime) -> int:
    """The id of the newest row whose ``field`` is before ``since`` (0 if none). Planned for
    its values: a generic plan cannot see how recent ``since`` is."""
    with planned_each_time():
        found = (
            model._default_manager.filter(**{f"{field}__lt": since})
            .order_by("-pk")
            .values_list("pk", flat=True)
            .first()
        )
    return int(found or 0)
