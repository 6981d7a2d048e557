"""Query-string filters for the native API. Time bounds are ISO 8601, ``*_after`` inclusive and
``*_before`` exclusive."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import F, QuerySet
from django.db.models.expressions import OrderBy
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from customers.models import Account, Customer, SubjectStatus


class StableOrderingFilter(OrderingFilter):
    """Orders with empty values last either way, then by ``-id`` so that ties never move rows
    between pages (PostgreSQL returns tied rows in no particular order)."""

    def filter_queryset(
        self, request: Request, queryset: QuerySet[Any], view: Any
    ) -> QuerySet[Any]:
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        return queryset.order_by(*(_nulls_last(field) for field in ordering), "-id")


def _nulls_last(field: str) -> OrderBy:
    if field.startswith("-"):
        return F(field[1:]).desc(nulls_last=True)
    return F(field).asc(nulls_last=True)


class IdFilter(django_filters.NumberFilter):  # type: ignore[misc]
    """A whole-number id; ``NumberFilter`` alone would accept and truncate ``1.5``."""

    field_class = forms.IntegerField


class CustomerFilter(django_filters.FilterSet):  # type: ignore[misc]
    external_id = django_filters.CharFilter()
    email = django_filters.CharFilter(lookup_expr="iexact", help_text="Case-insensitive.")
    plan = django_filters.CharFilter()
    region = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=SubjectStatus.choices)
    lifecycle_stage = django_filters.CharFilter()
    account = IdFilter(field_name="account__id", help_text="Account id.")
    account_external_id = django_filters.CharFilter(field_name="account__external_id")
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )
    last_seen_after = django_filters.IsoDateTimeFilter(
        field_name="last_seen", lookup_expr="gte", help_text="Last seen at or after (ISO 8601)."
    )

    class Meta:
        model = Customer
        fields: list[str] = []


class AccountFilter(django_filters.FilterSet):  # type: ignore[misc]
    external_id = django_filters.CharFilter()
    plan = django_filters.CharFilter()
    region = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=SubjectStatus.choices)

    class Meta:
        model = Account
        fields: list[str] = []
