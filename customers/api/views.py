"""Native read-only REST API over customers, accounts and a customer's events. Thin shells:
parse the request, call a selector, serialize."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from customers import selectors
from customers.api.filters import AccountFilter, CustomerFilter, StableOrderingFilter
from customers.api.serializers import (
    AccountDetailSerializer,
    AccountSerializer,
    CustomerDetailSerializer,
    CustomerSerializer,
    EventQuerySerializer,
    EventSerializer,
)
from customers.models import Account, Customer, Event


class CanView(permissions.BasePermission):
    """Reads only, by staff or by users holding the view's ``view_permission``.

    Like ``DjangoModelPermissions``, but it also guards GET, which that class leaves open.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if request.method not in permissions.SAFE_METHODS or not user.is_authenticated:
            return False
        return bool(user.is_staff or user.has_perm(view.view_permission))


class EventCursorPagination(CursorPagination):
    # Event tables are huge: seek on the (customer, occurred_at) index instead of counting rows.
    ordering = ("-occurred_at", "-id")


class CustomerViewSet(viewsets.ReadOnlyModelViewSet[Customer]):
    permission_classes = (CanView,)
    view_permission = "customers.view_customer"
    filter_backends = (DjangoFilterBackend, StableOrderingFilter)
    filterset_class = CustomerFilter
    ordering_fields = ("created_at", "last_seen")

    def get_queryset(self) -> QuerySet[Customer]:
        if self.action == "retrieve":
            return selectors.customers_with_contact_points()
        return selectors.customers_with_account()

    def get_serializer_class(self) -> type[BaseSerializer[Customer]]:
        if self.action == "retrieve":
            return CustomerDetailSerializer
        return CustomerSerializer


class AccountViewSet(viewsets.ReadOnlyModelViewSet[Account]):
    permission_classes = (CanView,)
    view_permission = "customers.view_account"
    filter_backends = (DjangoFilterBackend, StableOrderingFilter)
    filterset_class = AccountFilter
    ordering_fields = ("created_at",)

    def get_queryset(self) -> QuerySet[Account]:
        if self.action == "retrieve":
            return selectors.accounts_with_customer_count()
        return selectors.accounts_all()

    def get_serializer_class(self) -> type[BaseSerializer[Account]]:
        if self.action == "retrieve":
            return AccountDetailSerializer
        return AccountSerializer


@extend_schema(
    parameters=[
        OpenApiParameter(
            "customer_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Customer id."
        ),
        EventQuerySerializer,
    ],
    description="A customer's events, newest first (by `occurred_at`, then `id`). "
    "404 when the customer does not exist.",
)
class CustomerEventList(generics.ListAPIView[Event]):
    permission_classes = (CanView,)
    view_permission = "customers.view_event"
    serializer_class = EventSerializer
    pagination_class = EventCursorPagination
    # The query is validated by EventQuerySerializer; no filter or ordering backends.
    filter_backends = ()

    def list(self, request: Request, *args: Any, customer_id: int, **kwargs: Any) -> Response:
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if not selectors.customer_exists(customer_id=customer_id):
            raise NotFound("No customer with this id.")
        params = query.validated_data
        events = selectors.customer_events_between(
            customer_id=customer_id,
            name=params.get("name"),
            event_type=params.get("type"),
            since=params.get("since"),
            until=params.get("until"),
        )
        page = self.paginate_queryset(events)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
