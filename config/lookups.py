"""``field__any=[...]``: membership in a list as one array parameter.

Django writes ``field__in=[...]`` as ``IN (%s, %s, …)``: a statement whose text grows with the
list, which psycopg re-parses on every call (it caches only statements of up to 50
parameters) — measurable on batches of hundreds. ``field__any`` writes ``field = ANY(%s)``
on PostgreSQL, one short statement whatever the list's length, and ``IN (…)`` elsewhere.
Registered on every field by ``customers.apps.CustomersConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, ForeignObject, Lookup
from django.db.models.sql.compiler import SQLCompiler


class AnyOf(Lookup):  # type: ignore[type-arg]
    lookup_name = "any"
    prepare_rhs = False

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(v, connection) for v in self.rhs]
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        if not values:
            raise EmptyResultSet
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]


def lookups_register() -> None:
    Field.register_lookup(AnyOf)
    ForeignObject.register_lookup(AnyOf)  # related fields keep lookups of their own
