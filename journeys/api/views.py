"""Native REST API over journeys. Thin shells: parse the request, call a selector, serialize.
Authentication and the read permission are the customers API's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from customers.api.views import CanView
from customers.selectors import customer_exists
from journeys.api import selectors
from journeys.api.filters import JourneyFilter
from journeys.api.serializers import (
    EnrollmentSerializer,
    JourneyDetailSerializer,
    JourneySerializer,
)
from journeys.models import Enrollment, Journey


class JourneyViewSet(viewsets.ReadOnlyModelViewSet[Journey]):
    """Journeys by key with their active version's enrollment counts. A journey's own fields
    are its working copy (what the next go-live would snapshot); the detail adds the rest of
    it, the live version customers run through (`active_definition`) and every version."""

    permission_classes = (CanView,)
    view_permission = "journeys.view_journey"
    lookup_field = "key"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filter_backends = (DjangoFilterBackend,)
    filterset_class = JourneyFilter

    def get_queryset(self) -> QuerySet[Journey]:
        if self.action == "retrieve":
            return selectors.journeys_with_versions()
        return selectors.journeys_listed()

    def get_serializer_class(self) -> type[BaseSerializer[Journey]]:
        if self.action == "retrieve":
            return JourneyDetailSerializer
        return JourneySerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None  # noqa: S101 (the default pagination is on)
        serializer = self.get_serializer(page, many=True, context=self._context(page))
        return self.get_paginated_response(serializer.data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        journey = self.get_object()
        return Response(self.get_serializer(journey, context=self._context([journey])).data)

    def _context(self, journeys: Sequence[Journey]) -> dict[str, Any]:
        """The enrollment counts of every journey serialized, in one aggregate."""
        counts = selectors.enrollment_counts(
            version_ids=[j.active_version_id for j in journeys if j.active_version_id is not None]
        )
        return {**self.get_serializer_context(), "enrollment_counts": counts}


class EnrollmentCursorPagination(CursorPagination):
    ordering = ("-entered_at", "-id")


@extend_schema(
    parameters=[
        OpenApiParameter(
            "customer_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Customer id."
        )
    ],
    description="The customer's journey enrollments, newest first (by `entered_at`, then "
    "`id`), each with its step runs in the order they ran; a send step's run names the "
    "message it handed to the outbox with that message's status, channel and reason. "
    "404 when the customer does not exist.",
)
class CustomerEnrollmentList(generics.ListAPIView[Enrollment]):
    permission_classes = (CanView,)
    view_permission = "journeys.view_enrollment"
    serializer_class = EnrollmentSerializer
    pagination_class = EnrollmentCursorPagination
    filter_backends = ()

    def list(self, request: Request, *args: Any, customer_id: int, **kwargs: Any) -> Response:
        if not customer_exists(customer_id=customer_id):
            raise NotFound("No customer with this id.")
        enrollments = selectors.customer_enrollments(customer_id=customer_id)
        page = self.paginate_queryset(enrollments)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
