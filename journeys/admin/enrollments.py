"""Enrollments, read-only: who is where in which journey, with each one's step history. The
runner, the receivers and the migration write them; nobody edits them here."""

from __future__ import annotations

import json
from typing import Any, Final

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from config.admin_base import ModelAdmin, TabularInline
from customers.admin import CappedCountPaginator
from journeys.models import Enrollment, StepRun

_EMPTY: Final = "—"


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StepRunInline(_ReadOnly, TabularInline):  # type: ignore[type-arg]
    model = StepRun
    verbose_name = "step"
    verbose_name_plural = "step history"
    fields = ("at", "step_key", "status", "result_text", "message")
    readonly_fields = fields
    ordering = ("at", "id")
    extra = 0

    @admin.display(description="result")
    def result_text(self, run: StepRun) -> str:
        return json.dumps(run.result, ensure_ascii=False, sort_keys=True) if run.result else ""

    @admin.display(description="message")
    def message(self, run: StepRun) -> SafeString | str:
        if run.message_id is None:
            return _EMPTY
        url = reverse("admin:messaging_message_change", args=(run.message_id,))
        return format_html('<a href="{}">message {}</a>', url, run.message_id)


@admin.register(Enrollment)
class EnrollmentAdmin(_ReadOnly, ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "id",
        "customer_link",
        "journey",
        "version_number",
        "state",
        "current_step",
        "entered_at",
        "next_run_at",
        "converted_at",
    )
    list_filter = ("journey", "state")
    list_select_related = ("journey", "version", "customer")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    ordering = ("-id",)
    sortable_by = ()
    inlines = (StepRunInline,)
    fields = (
        "customer_link",
        "journey",
        "version_number",
        "entry_key",
        "state",
        "current_step",
        "next_run_at",
        "step_started_at",
        "variants",
        "entered_at",
        "finished_at",
        "exit_reason",
        "converted_at",
        "updated_at",
    )
    readonly_fields = ("customer_link", "version_number")

    @admin.display(description="customer")
    def customer_link(self, enrollment: Enrollment) -> SafeString:
        customer = enrollment.customer
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:customers_customer_change", args=(customer.pk,)),
            customer.external_id or f"anonymous #{customer.pk}",
        )

    @admin.display(description="version")
    def version_number(self, enrollment: Enrollment) -> str:
        return f"v{enrollment.version.number}"
