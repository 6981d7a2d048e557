"""A batch of rows as one ``jsonb_to_recordset`` parameter (PostgreSQL).

The hot path's bulk writes (decided messages, step runs, enrollment positions) send the whole
batch as one JSON document: ``bulk_create``/``bulk_update`` spent more time preparing values
than the database spent writing them. ``recordset`` names the columns of some model fields
and the row type that reads them back out of the document.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models

_PG_TYPES = {
    "AutoField": "bigint",
    "BigAutoField": "bigint",
    "BigIntegerField": "bigint",
    "BooleanField": "boolean",
    "CharField": "text",
    "DateTimeField": "timestamptz",
    "ForeignKey": "bigint",
    "IntegerField": "integer",
    "JSONField": "jsonb",
    "PositiveIntegerField": "integer",
}


def recordset(
    model: type[models.Model], names: Sequence[str] | None = None
) -> tuple[list[str], str]:
    """The columns of the fields ``names`` (every concrete field when None) and the
    ``jsonb_to_recordset`` row type that reads them (``"id bigint, state text, …"``). A
    row's JSON keys are the fields' attribute names, which are their column names here."""
    fields = {f.name: f for f in model._meta.concrete_fields}
    chosen = [fields[name] for name in names] if names is not None else list(fields.values())
    columns = [f.column for f in chosen]
    typed = ", ".join(f"{f.column} {_PG_TYPES[f.get_internal_type()]}" for f in chosen)
    return columns, typed
