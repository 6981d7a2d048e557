"""Admin for where notices go and what became of them: teams (a notify step's ``sales`` and
``support``), webhook endpoints (with their signing secret and a rotate action) and the
notices outbox, read-only but for retrying failed notices (``journeys.notices``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from audit.admin import AuditTrailMixin
from config.admin_base import ModelAdmin
from config.admin_buttons import ServiceButtonsMixin
from journeys.models import Notice, NoticeStatus, Team, WebhookEndpoint, WebhookEvent
from journeys.notices import endpoint_secret, endpoint_secret_rotate, notices_retry

# A URL typed without a scheme is https (Django 6's default; receivers must be https).
_URLS: Final[Mapping[type[models.Field[Any, Any]], Mapping[str, Any]]] = {
    models.URLField: {"assume_scheme": "https"}
}


@admin.register(Team)
class TeamAdmin(AuditTrailMixin, ModelAdmin):  # type: ignore[type-arg]
    formfield_overrides = _URLS
    list_display = ("key", "name", "email", "webhook_url")
    fieldsets = (
        (
            None,
            {
                "fields": ("key", "name", "email", "webhook_url"),
                "description": "A notify step sent to <b>sales</b> or <b>support</b> emails the "
                "team's address and, if set, POSTs a signed JSON notice to its webhook (signed "
                "with MESSAGING_WEBHOOK_SECRET, like webhook messages).",
            },
        ),
    )


class EndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="An https URL that accepts JSON POSTs."
    )
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to receive every event type.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "events", "is_active")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditTrailMixin, ServiceButtonsMixin):
    form = EndpointForm
    formfield_overrides = _URLS
    list_display = ("name", "url", "event_list", "is_active", "delivered", "failed")
    list_filter = ("is_active",)
    readonly_fields = ("signing_secret", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "url", "events", "is_active")}),
        (
            "Verifying deliveries",
            {
                "fields": ("signing_secret", "created_at"),
                "description": "Each POST carries <code>Milepost-Signature: t=&lt;unix "
                "seconds&gt;,v1=&lt;hex&gt;</code>, HMAC-SHA256 of <code>&lt;t&gt;.&lt;body&gt;"
                "</code> with this secret, and <code>Milepost-Idempotency-Key</code> (the same "
                "on every retry). Reject old timestamps; drop repeated keys.",
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        endpoints: QuerySet[WebhookEndpoint] = super().get_queryset(request)
        return endpoints.annotate(
            delivered_count=Count("notices", filter=Q(notices__status=NoticeStatus.DELIVERED)),
            failed_count=Count("notices", filter=Q(notices__status=NoticeStatus.FAILED)),
        )

    @admin.display(description="events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events) if endpoint.events else "all"

    @admin.display(description="delivered")
    def delivered(self, endpoint: WebhookEndpoint) -> int:
        return int(getattr(endpoint, "delivered_count", 0))

    @admin.display(description="failed")
    def failed(self, endpoint: WebhookEndpoint) -> int:
        return int(getattr(endpoint, "failed_count", 0))

    @admin.display(description="signing secret")
    def signing_secret(self, endpoint: WebhookEndpoint) -> SafeString | str:
        if endpoint.pk is None:
            return "Shown once the endpoint is saved."
        # The change form's own POST (with its CSRF token) sent to the rotate view: a form
        # cannot nest in the change form.
        return format_html(
            '<code>{}</code> <button type="submit" class="button" formaction="{}" '
            'formmethod="post" formnovalidate>Rotate secret</button>',
            endpoint_secret(endpoint),
            reverse("admin:journeys_webhookendpoint_rotate", args=(endpoint.pk,)),
        )

    button_views = ("rotate",)

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: a new secret; the old one stops verifying at once."""
        endpoint = get_object_or_404(WebhookEndpoint, pk=object_id)
        if not self.has_change_permission(request, endpoint):
            return HttpResponse(status=403)
        endpoint_secret_rotate(endpoint.pk)
        self.message_user(
            request,
            "New signing secret made: update the receiver, deliveries are signed with it "
            "from now on.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:journeys_webhookendpoint_change", args=(endpoint.pk,))
        )


@admin.register(Notice)
class NoticeAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Notices are written by the runner and the receivers and sent by ``notices_send``;
    the one write here is retrying failed ones."""

    list_display = (
        "id", "event", "kind", "to", "status", "attempts", "last_error", "next_attempt_at",
        "created_at",
    )  # fmt: skip
    list_filter = ("status", "kind", "event")
    search_fields = ("=to", "=key")
    ordering = ("-id",)
    show_full_result_count = False
    actions = ("retry",)
    readonly_fields = (
        "key", "kind", "event", "endpoint", "enrollment", "to", "template", "payload", "status",
        "attempts", "next_attempt_at", "claimed_at", "last_error", "created_at", "delivered_at",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("journeys.change_notice"))

    @admin.action(description="Retry selected failed notices", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Notice]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        count = notices_retry(selected)
        text = (
            ngettext("%d notice will be sent again.", "%d notices will be sent again.", count)
            % count
        )
        if skipped := len(selected) - count:
            text += f" {skipped} skipped: only failed notices are retried."
        self.message_user(request, text, messages.SUCCESS if count else messages.WARNING)
