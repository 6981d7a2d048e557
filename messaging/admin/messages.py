"""The send log, read-only: find a customer's messages and read why each went (or didn't),
plus the one write support may do here, retrying a failed send (``messages_retry``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from config.admin_base import ModelAdmin
from customers.admin import CappedCountPaginator
from customers.selectors import customer_ids_matching
from messaging import reasons
from messaging.admin.display import html_untracked, rendered_panel
from messaging.explain import channel_label, channel_lines, message_reason, status_sentence
from messaging.models import Message, MessageStatus
from messaging.retry import messages_retry

_EMPTY: Final = "—"


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def why_reason(message: Message) -> str:
    """The message's own reason as a sentence ("" when it has none)."""
    until = _when(message.send_after) if message.status == MessageStatus.DEFERRED else ""
    return message_reason(message.reason, message.explanation, error=message.error, until=until)


class ReasonFilter(admin.SimpleListFilter):
    """The documented codes, not ``SELECT DISTINCT reason`` over the whole send log."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(code, code.replace("_", " ")) for code in reasons.ALL]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        value = self.value()
        return queryset.filter(reason=value) if value else queryset


@admin.register(Message)
class MessageAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Messages are written by the delivery policy and the send tasks; nobody adds, edits or
    deletes them here."""

    list_display = (
        "id",
        "customer_link",
        "channel",
        "status",
        "reason",
        "topic",
        "template_label",
        "created_at",
    )
    list_filter = ("status", ReasonFilter, "channel", "topic")
    list_select_related = ("customer", "topic", "template_version__template")
    # Answered by get_search_results with exact, indexed lookups; listed for the search box.
    search_fields = ("idempotency_key", "provider_id")
    search_help_text = (
        "Exact customer user id, email or anonymous id, idempotency key, or provider message id."
    )
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice is a scan per choice
    paginator = CappedCountPaginator
    ordering = ("-id",)  # newest first by the primary key: no sort of the whole log
    sortable_by = ()
    actions = ("retry",)
    fieldsets = (
        ("Why", {"fields": ("why",)}),
        (
            "Message",
            {
                "fields": (
                    "customer_link",
                    "status",
                    "reason",
                    "channel",
                    "channels",
                    "topic",
                    "is_transactional",
                    "template_label",
                    "journey_key",
                    "priority",
                    "to_address",
                    "platform",
                    "locale",
                    "idempotency_key",
                    "provider_id",
                    "error",
                    "attempts",
                )
            },
        ),
        ("Rendered content", {"fields": ("rendered_content",)}),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "send_after",
                    "reserved_at",
                    "claimed_at",
                    "sent_at",
                    "delivered_at",
                    "opened_at",
                    "clicked_at",
                    "failed_at",
                    "read_at",
                    "dismissed_at",
                    "updated_at",
                )
            },
        ),
        ("Request", {"fields": ("templates", "context", "links")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        found = Q(idempotency_key=term) | Q(provider_id=term)
        customers = customer_ids_matching(term=term)
        if customers:
            found |= Q(customer_id__in=customers)
        return queryset.filter(found), False

    # --- columns and panels

    @admin.display(description="customer")
    def customer_link(self, message: Message) -> SafeString | str:
        customer = message.customer
        if customer is None:
            return "erased customer"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:customers_customer_change", args=(customer.pk,)),
            customer,
        )

    @admin.display(description="template")
    def template_label(self, message: Message) -> SafeString | str:
        version = message.template_version
        if version is None:
            return _EMPTY
        return format_html(
            '<a href="{}">{}</a> v{}',
            reverse("admin:messaging_template_change", args=(version.template_id,)),
            version.template.key,
            version.number,
        )

    @admin.display(description="why")
    def why(self, message: Message) -> str:
        return render_to_string(
            "admin/messaging/message/why.html",
            {
                "status": message.get_status_display(),
                "channel": channel_label(message.channel) if message.channel else "",
                "status_sentence": status_sentence(message.status),
                "reason_sentence": why_reason(message),
                "lines": channel_lines(message.explanation, message.channel),
                "is_transactional": message.is_transactional,
            },
        )

    @admin.display(description="rendered")
    def rendered_content(self, message: Message) -> str:
        rendered = dict(message.rendered) if isinstance(message.rendered, dict) else {}
        if "html" in rendered:
            rendered["html"] = html_untracked(str(rendered["html"]), message.links)
        return rendered_panel(
            message.channel,
            rendered,
            empty="Nothing was rendered: content is rendered only for a message the policy "
            "lets go.",
        )

    # --- retry

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("messaging.change_message"))

    @admin.action(
        description="Retry selected failed or unconfirmed messages", permissions=["retry"]
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        count = messages_retry(selected)
        skipped = len(selected) - count
        text = (
            ngettext(
                "%d message handed back to the delivery policy.",
                "%d messages handed back to the delivery policy.",
                count,
            )
            % count
        )
        if count:
            text += (
                " Each is weighed again (consent, suppressions, caps as they are now) at the"
                " next tick and sent or recorded with its reason; an unconfirmed one may"
                " already have reached the customer."
            )
        if skipped:
            text += (
                " "
                + ngettext(
                    "%d skipped: only sends that failed after every retry or were refused by the "
                    "provider, and unconfirmed sends, are retried (never a bad address or a "
                    "template error).",
                    "%d skipped: only sends that failed after every retry or were refused by the "
                    "provider, and unconfirmed sends, are retried (never a bad address or a "
                    "template error).",
                    skipped,
                )
                % skipped
            )
        self.message_user(request, text, messages.SUCCESS if count else messages.WARNING)
