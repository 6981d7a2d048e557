"""Native REST API over a customer's consent. Thin shells: parse the request, call a selector
or ``subscription_set``, serialize. Authentication and permissions are the other APIs'."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.api import selectors
from consent.api.serializers import (
    ChangeErrorsSerializer,
    ConsentRecordSerializer,
    CustomerSubscriptionsSerializer,
    SubscriptionPatchSerializer,
    change_errors,
)
from consent.models import ConsentRecord, ConsentSource
from consent.services import Evidence, subscription_set
from customers.api.views import CanView
from customers.selectors import customer_exists
from milestones.api.views import CanChange

_CUSTOMER_ID = OpenApiParameter(
    "customer_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Customer id."
)
_NO_CUSTOMER = "No customer with this id."


class CustomerSubscriptions(APIView):
    view_permission = "consent.view_subscription"
    change_permission = "consent.change_subscription"
    parser_classes = (JSONParser,)

    def get_permissions(self) -> Sequence[permissions.BasePermission]:
        if self.request.method in permissions.SAFE_METHODS:
            return (CanView(),)
        return (CanChange(),)

    @extend_schema(
        parameters=[_CUSTOMER_ID],
        responses={200: CustomerSubscriptionsSerializer},
        description="The customer's consent for every active topic on every channel (email, "
        "sms, push, in_app), channel by channel and topics by name: the stored `status` and "
        "whether marketing would go out under the region's rule (`effective`). "
        "404 when the customer does not exist.",
    )
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(_subscriptions(customer_id))

    @extend_schema(
        parameters=[_CUSTOMER_ID],
        # A whole body (a batch of changes), not a partial object: read_only keeps
        # drf-spectacular from documenting it as a PATCH of optional fields.
        request=SubscriptionPatchSerializer(read_only=True),
        responses={
            200: CustomerSubscriptionsSerializer,
            400: OpenApiResponse(
                ChangeErrorsSerializer,
                description="Every bad item of `changes` (by index) and every bad field of "
                "the body. Nothing was changed.",
            ),
        },
        description="Change the customer's consent, all or nothing: every change is "
        "validated first, then all are applied in one transaction, in order, each with its "
        "ledger row (source `api`, the caller's IP address and user agent, `wording`, and the "
        "token's user). A null `topic` means every active marketing topic. An email opt-in "
        "in a double opt-in region becomes `pending` and asks the customer to confirm. "
        "Answers with the customer's consent as GET does. "
        "Needs the permission to change subscriptions; 404 when the customer does not exist.",
    )
    def patch(self, request: Request, customer_id: int) -> Response:
        if not customer_exists(customer_id=customer_id):
            raise NotFound(_NO_CUSTOMER)
        body = SubscriptionPatchSerializer.for_data(request.data)
        if not body.is_valid():
            return _bad_request(change_errors(body.errors))
        evidence = Evidence(
            source=ConsentSource.API,
            ip_address=_client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            wording=body.validated_data["wording"],
            actor_id=request.user.pk,
        )
        with transaction.atomic():
            for change in body.validated_data["changes"]:
                topic = change["topic"]
                subscription_set(
                    customer_id=customer_id,
                    channel=change["channel"],
                    topic_keys=None if topic is None else [topic],
                    status=change["status"],
                    evidence=evidence,
                )
        return Response(_subscriptions(customer_id))


def _subscriptions(customer_id: int) -> Any:
    found = selectors.customer_subscriptions(customer_id=customer_id)
    if found is None:
        raise NotFound(_NO_CUSTOMER)
    return CustomerSubscriptionsSerializer(found).data


def _bad_request(errors: list[dict[str, Any]]) -> Response:
    return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)


def _client_ip(request: Request) -> str | None:
    # REMOTE_ADDR only: a forwarded header is whatever the client wants it to be.
    address = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class ConsentHistoryPagination(CursorPagination):
    # Seeks on the (customer, -created_at) index; ties keep their order by id.
    ordering = ("-created_at", "-id")


@extend_schema(
    parameters=[_CUSTOMER_ID],
    description="The customer's consent ledger, newest first: every change with its "
    "evidence. 404 when the customer does not exist.",
)
class CustomerConsentHistory(generics.ListAPIView[ConsentRecord]):
    permission_classes = (CanView,)
    view_permission = "consent.view_consentrecord"
    serializer_class = ConsentRecordSerializer
    pagination_class = ConsentHistoryPagination
    filter_backends = ()

    def list(self, request: Request, *args: Any, customer_id: int, **kwargs: Any) -> Response:
        if not customer_exists(customer_id=customer_id):
            raise NotFound(_NO_CUSTOMER)
        page = self.paginate_queryset(selectors.consent_records(customer_id=customer_id))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
