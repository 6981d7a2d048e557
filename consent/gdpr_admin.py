"""GDPR actions on the customer admin: export as JSON, and erase with a confirmation page.

Added from the consent app (which owns GDPR) to the customers admin, so ``customers`` still
imports nothing above it (DESIGN.md §3). Both need explicit permissions, not just staff."""

from __future__ import annotations

from typing import Any

import orjson
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from consent.gdpr import customer_erase, customer_export
from customers.models import Customer

EXPORT_PERMISSIONS = ("customers.view_customer", "consent.view_consentrecord")
ERASE_PERMISSIONS = ("customers.delete_customer",)


@admin.action(description="GDPR: export everything held (JSON)", permissions=["gdpr_export"])
def gdpr_export(
    modeladmin: admin.ModelAdmin[Customer], request: HttpRequest, queryset: QuerySet[Customer]
) -> HttpResponse | None:
    ids = list(queryset.values_list("pk", flat=True)[:2])
    if len(ids) != 1:
        modeladmin.message_user(request, "Select exactly one customer to export.", messages.ERROR)
        return None
    body = orjson.dumps(customer_export(customer_id=ids[0]), option=orjson.OPT_INDENT_2)
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="customer-{ids[0]}.json"'
    return response


@admin.action(description="GDPR: erase (asks to confirm)", permissions=["gdpr_erase"])
def gdpr_erase(
    modeladmin: admin.ModelAdmin[Customer], request: HttpRequest, queryset: QuerySet[Customer]
) -> HttpResponse | None:
    customers = list(queryset.order_by("pk")[:101])
    if len(customers) > 100:
        modeladmin.message_user(request, "Erase at most 100 customers at once.", messages.ERROR)
        return None
    if request.POST.get("confirm") != "yes":
        context: dict[str, Any] = {
            **modeladmin.admin_site.each_context(request),
            "title": "Erase customers?",
            "customers": customers,
            "opts": modeladmin.model._meta,
            "action": "gdpr_erase",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/consent/erase_confirmation.html", context)
    events = 0
    for customer in customers:
        events += customer_erase(customer_id=customer.pk).events
    modeladmin.message_user(
        request,
        f"Erased {len(customers)} customer(s) and {events} events; their addresses are kept "
        "only as hashed suppressions.",
        messages.SUCCESS,
    )
    return None


def _has(permissions: tuple[str, ...]) -> Any:
    def check(self: admin.ModelAdmin[Customer], request: HttpRequest) -> bool:
        return bool(request.user.has_perms(permissions))

    return check


def customer_admin_extend() -> None:
    """Add the GDPR actions to the registered customer admin."""
    model_admin = admin.site._registry.get(Customer)
    if model_admin is None:
        return
    cls = type(model_admin)
    cls.has_gdpr_export_permission = _has(EXPORT_PERMISSIONS)  # type: ignore[attr-defined]
    cls.has_gdpr_erase_permission = _has(ERASE_PERMISSIONS)  # type: ignore[attr-defined]
    current = tuple(model_admin.actions or ())
    if gdpr_export not in current:
        model_admin.actions = (*current, gdpr_export, gdpr_erase)
