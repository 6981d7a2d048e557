"""Native REST API over messaging: the in-app inbox and a customer's messages. Thin shells:
parse the request, call a selector or an inbox service, serialize. Authentication and
permissions are the other APIs'."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.api.views import CanView
from customers.selectors import customer_exists
from messaging import inbox
from messaging.api import selectors
from messaging.api.serializers import (
    CustomerMessageSerializer,
    InboxMessageSerializer,
    InboxQuerySerializer,
)
from messaging.models import Message
from milestones.api.views import CanChange

_CUSTOMER_ID = OpenApiParameter(
    "customer_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Customer id."
)
_MESSAGE_ID = OpenApiParameter(
    "message_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Message id."
)
_NO_CUSTOMER = "No customer with this id."


class MessageCursorPagination(CursorPagination):
    # Seeks on the (customer, -created_at) index; ties keep their order by id.
    ordering = ("-created_at", "-id")


class _CustomerMessageList(generics.ListAPIView[Message]):
    permission_classes = (CanView,)
    view_permission = "messaging.view_message"
    pagination_class = MessageCursorPagination
    filter_backends = ()

    def list(self, request: Request, *args: Any, customer_id: int, **kwargs: Any) -> Response:
        messages = self.messages(request, customer_id)
        if not customer_exists(customer_id=customer_id):
            raise NotFound(_NO_CUSTOMER)
        page = self.paginate_queryset(messages)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def messages(self, request: Request, customer_id: int) -> QuerySet[Message]:
        raise NotImplementedError


@extend_schema(
    parameters=[_CUSTOMER_ID, InboxQuerySerializer],
    description="The customer's in-app inbox: the in-app messages that went out and were not "
    "dismissed, newest first (by `created_at`, then `id`). 404 when the customer does not "
    "exist.",
)
class CustomerInbox(_CustomerMessageList):
    serializer_class = InboxMessageSerializer

    def messages(self, request: Request, customer_id: int) -> QuerySet[Message]:
        query = InboxQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.inbox_messages(
            customer_id=customer_id, is_unread_only=query.validated_data["unread"]
        )


@extend_schema(
    parameters=[_CUSTOMER_ID],
    description="Every message of the customer on every channel, newest first (by "
    "`created_at`, then `id`), whether it went out or not: why the customer did or did not "
    "get it (`status`, `reason`, and `explanation`, what the delivery policy said of each "
    "channel it tried). 404 when the customer does not exist.",
)
class CustomerMessages(_CustomerMessageList):
    serializer_class = CustomerMessageSerializer

    def messages(self, request: Request, customer_id: int) -> QuerySet[Message]:
        return selectors.customer_messages(customer_id=customer_id)


_ACTION_RESPONSES = {
    204: OpenApiResponse(description="Done (or done before: the first time is kept)."),
    404: OpenApiResponse(description="Not an in-app message of this customer's inbox."),
}


class InboxRead(APIView):
    permission_classes = (CanChange,)
    change_permission = "messaging.change_message"

    @extend_schema(
        parameters=[_CUSTOMER_ID, _MESSAGE_ID],
        request=None,
        responses=_ACTION_RESPONSES,
        description="Mark an inbox message read. The first call sets `read_at` and records "
        "the message as opened (on the message and on the customer's timeline); later calls "
        "change nothing. Needs the permission to change messages.",
    )
    def post(self, request: Request, customer_id: int, message_id: int) -> Response:
        return _inbox_apply(inbox.inbox_read, customer_id=customer_id, message_id=message_id)


class InboxDismiss(APIView):
    permission_classes = (CanChange,)
    change_permission = "messaging.change_message"

    @extend_schema(
        parameters=[_CUSTOMER_ID, _MESSAGE_ID],
        request=None,
        responses=_ACTION_RESPONSES,
        description="Take a message out of the inbox. The first call sets `dismissed_at`; "
        "later calls change nothing. Needs the permission to change messages.",
    )
    def post(self, request: Request, customer_id: int, message_id: int) -> Response:
        return _inbox_apply(inbox.inbox_dismiss, customer_id=customer_id, message_id=message_id)


def _inbox_apply(service: Callable[..., None], *, customer_id: int, message_id: int) -> Response:
    try:
        service(customer_id=customer_id, message_id=message_id)
    except Message.DoesNotExist:
        raise NotFound("No in-app message with this id in this customer's inbox.") from None
    return Response(status=status.HTTP_204_NO_CONTENT)
