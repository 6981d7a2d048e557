"""The ops console, for on-call engineers: one admin page (``/admin/ops/console/``, listed on
the admin index under Operations), the same data as JSON for its 5-second refresh, and a
retry of failed messages. Every read is in ``ops/console.py``; the retry is
``messaging.retry.messages_retry``, as in the send log's own retry action."""

from __future__ import annotations

from typing import Any, Final

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from config.admin_base import ModelAdmin
from messaging.retry import messages_retry
from ops import console
from ops.models import Console

VIEW_PERMISSION: Final = "ops.view_ops_console"
RETRY_PERMISSION: Final = "messaging.change_message"
REFRESH_SECONDS: Final = 5


def can_view(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(VIEW_PERMISSION))


def can_retry(request: HttpRequest) -> bool:
    return can_view(request) and bool(request.user.has_perm(RETRY_PERMISSION))


@admin.register(Console)
class ConsoleAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Not a list of rows: the console page takes the place of the change list, so the admin
    index links to it for whoever may view it."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view  # staff only, CSRF-protected, never cached
        return [
            path("", view(require_GET(self.console_view)), name="ops_console_changelist"),
            path("data.json", view(require_GET(self.data_view)), name="ops_console_data"),
            path("retry/", view(require_POST(self.retry_view)), name="ops_console_retry"),
        ]

    def console_view(self, request: HttpRequest) -> HttpResponse:
        _require(can_view(request))
        context = {
            **self.admin_site.each_context(request),
            "title": "Ops console",
            "opts": self.opts,
            "console": console.console_read(),
            "can_retry": can_retry(request),
            "refresh_seconds": REFRESH_SECONDS,
            "workers_timeout": console.WORKERS_TIMEOUT_SECONDS,
            "failed_shown": console.FAILED_SHOWN,
            "failed_scanned": f"{console.FAILED_SCANNED:,}",
        }
        return TemplateResponse(request, "admin/ops/console.html", context)

    def data_view(self, request: HttpRequest) -> JsonResponse:
        _require(can_view(request))
        return JsonResponse(console.console_read().as_json())

    def retry_view(self, request: HttpRequest) -> HttpResponse:
        _require(can_retry(request))
        selected = sorted({int(v) for v in request.POST.getlist("message") if v.isdecimal()})
        count = messages_retry(selected)
        level = messages.SUCCESS if count else messages.WARNING
        self.message_user(request, retry_summary(count, len(selected) - count), level)
        return HttpResponseRedirect(reverse("admin:ops_console_changelist"))


def retry_summary(retried: int, skipped: int) -> str:
    """What the retry did, for the admin message."""
    parts = []
    if retried:
        parts.append(
            ngettext(
                "%d message handed back to the delivery policy: it is weighed again (consent, "
                "suppressions, caps as they are now) at the next tick.",
                "%d messages handed back to the delivery policy: each is weighed again "
                "(consent, suppressions, caps as they are now) at the next tick.",
                retried,
            )
            % retried
        )
    if skipped:
        parts.append(
            ngettext(
                "%d skipped: no longer failed, or failed in a way a retry cannot fix "
                "(a bad address, a template error).",
                "%d skipped: no longer failed, or failed in a way a retry cannot fix "
                "(a bad address, a template error).",
                skipped,
            )
            % skipped
        )
    return " ".join(parts) or "No message was selected."


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied
