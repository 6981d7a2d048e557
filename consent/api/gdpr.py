"""GDPR over the API: export everything held about a customer; erase a customer.

Both need explicit permissions (being staff is not enough): export needs
``customers.view_customer`` and ``consent.view_consentrecord``; erasing needs
``customers.delete_customer`` and a body of ``{"confirm": true}``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.gdpr import customer_erase, customer_export
from customers.models import Customer


class HasAllPermissions(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user.is_authenticated and user.has_perms(view.required_permissions))


class CustomerExport(APIView):
    permission_classes = (HasAllPermissions,)
    required_permissions = ("customers.view_customer", "consent.view_consentrecord")

    @extend_schema(
        operation_id="customer_export",
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="No such customer.")},
        summary="Everything held about a customer (GDPR access request), as JSON.",
    )
    def get(self, request: Request, customer_id: int) -> Response:
        try:
            return Response(customer_export(customer_id=customer_id))
        except Customer.DoesNotExist as exc:
            raise NotFound("No customer with this id.") from exc


class EraseRequest(serializers.Serializer[None]):
    confirm = serializers.BooleanField(help_text="Must be true: erasing cannot be undone.")

    def validate_confirm(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError("Must be true: erasing cannot be undone.")
        return value


class CustomerErase(APIView):
    permission_classes = (HasAllPermissions,)
    required_permissions = ("customers.delete_customer",)
    parser_classes = (JSONParser,)

    @extend_schema(
        operation_id="customer_erase",
        request=EraseRequest,
        responses={
            200: inline_serializer(
                "ErasureSummary",
                {
                    "events": serializers.IntegerField(),
                    "suppressed_addresses": serializers.IntegerField(),
                    "messages_blanked": serializers.IntegerField(),
                },
            ),
            400: OpenApiResponse(description="confirm is missing or false."),
            404: OpenApiResponse(description="No such customer."),
        },
        summary="Erase a customer (GDPR): only hashed suppressions of their addresses remain.",
    )
    def post(self, request: Request, customer_id: int) -> Response:
        EraseRequest(data=request.data).is_valid(raise_exception=True)
        try:
            summary = customer_erase(customer_id=customer_id)
        except Customer.DoesNotExist as exc:
            raise NotFound("No customer with this id.") from exc
        return Response(
            {
                "events": summary.events,
                "suppressed_addresses": summary.suppressed_addresses,
                "messages_blanked": summary.messages_blanked,
            }
        )
