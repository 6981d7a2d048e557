"""Running the ingest hot path's SQL: server-side binding and prepared statements."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from django.db import connection


def fetch(
    sql: str, params: list[Any], portable: Callable[[], Iterable[tuple[Any, ...]]]
) -> list[tuple[Any, ...]]:
    """Run ``sql`` on PostgreSQL with server-side binding, else the portable ORM query.

    Django's psycopg cursor binds parameters client-side, quoting every array element into
    the SQL text; on the hot path that costs more than the query. A plain ``psycopg.Cursor``
    sends them as parameters.
    """
    if connection.vendor != "postgresql":
        return list(portable())
    connection.ensure_connection()
    # Wrapped like Django's own cursors, so query logging and execute_wrappers see it.
    wrap = connection._prepare_cursor  # type: ignore[attr-defined]
    with wrap(PreparedCursor(connection.connection)) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


class PreparedCursor(psycopg.Cursor[Any]):
    """Server-side binding, and prepared statements for the few fixed hot-path statements.

    Django turns psycopg's automatic preparation off (``prepare_threshold=None``); planning
    the insert on every request cost ~0.3 ms of a ~2 ms single ``track``.
    """

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> PreparedCursor:
        super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)
        return self
