"""The trail in the admin: a read-only list of every entry, and a "Change history" section
on the page of each audited object (``AuditTrailMixin``)."""

from __future__ import annotations

import json
from typing import Any, Final

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django_celery_beat.admin import (
    ClockedScheduleAdmin,
    CrontabScheduleAdmin,
    IntervalScheduleAdmin,
    PeriodicTaskAdmin,
    PeriodicTaskForm,
    SolarScheduleAdmin,
    TaskSelectWidget,
)
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from audit.models import AuditAction, AuditEntry
from config.admin_base import ModelAdmin

HISTORY_ROWS: Final = 20


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def history_rows(entries: list[AuditEntry]) -> list[dict[str, Any]]:
    """What the history table shows: per entry, its fields with the values before and after."""
    return [
        {
            "entry": entry,
            "changes": [
                {
                    "field": name,
                    "before": _value(change["from"]) if "from" in change else "",
                    "after": _value(change["to"]) if "to" in change else "",
                }
                for name, change in sorted(entry.changes.items())
            ],
        }
        for entry in entries
    ]


class AuditTrailMixin:
    """Adds a "Change history" section (the object's last changes, with a link to all of
    them) to the change page of an audited model's admin, below the form
    (templates/admin/change_form.html)."""

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None and obj.pk is not None:
            context["audit_history"] = change_history(obj)
        return super().render_change_form(  # type: ignore[misc,no-any-return]
            request, context, add, change, form_url, obj
        )


def change_history(obj: models.Model) -> SafeString:
    """The object's last ``HISTORY_ROWS`` changes as an HTML table."""
    content_type = ContentType.objects.get_for_model(obj)
    entries = list(
        AuditEntry.objects.filter(content_type=content_type, object_id=str(obj.pk)).order_by(
            "-at", "-id"
        )[:HISTORY_ROWS]
    )
    everything = (
        reverse("admin:audit_auditentry_changelist")
        + "?"
        + urlencode({"content_type__id__exact": str(content_type.pk), "object_id": str(obj.pk)})
    )
    return render_to_string(
        "admin/audit/history.html",
        {"rows": history_rows(entries), "everything": everything, "limit": HISTORY_ROWS},
    )


@admin.register(AuditEntry)
class AuditEntryAdmin(ModelAdmin):  # type: ignore[type-arg]
    """The whole trail, newest first; nobody adds, edits or deletes entries."""

    list_display = ("at", "actor_label", "action", "content_type", "object_link", "changed_fields")
    list_filter = ("action", "content_type", "at")
    search_fields = ("actor_label", "object_label", "object_id", "request_id")
    date_hierarchy = "at"
    list_select_related = ("content_type",)
    readonly_fields = ("diff",)
    fields = (
        "at", "actor_label", "action", "content_type", "object_id", "object_label",
        "request_id", "diff",
    )  # fmt: skip
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="object")
    def object_link(self, entry: AuditEntry) -> SafeString | str:
        model = entry.content_type.model_class()
        if (
            model is None
            or entry.action == AuditAction.DELETED
            or model not in admin.site._registry
        ):
            return entry.object_label
        url = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
            args=[entry.object_id],
        )
        return format_html('<a href="{}">{}</a>', url, entry.object_label)

    @admin.display(description="fields changed")
    def changed_fields(self, entry: AuditEntry) -> str:
        return ", ".join(sorted(entry.changes))

    @admin.display(description="what changed")
    def diff(self, entry: AuditEntry) -> SafeString:
        return render_to_string(
            "admin/audit/history.html", {"rows": history_rows([entry]), "everything": None}
        )


# Beat schedules and staff users are audited too: their admins get the history section.
# Every admin django-celery-beat and django.contrib.auth register is re-registered on
# Unfold's ModelAdmin (and Unfold's forms) so its pages share the theme.
for _model in (
    PeriodicTask,
    IntervalSchedule,
    CrontabSchedule,
    SolarSchedule,
    ClockedSchedule,
    User,
    Group,
):
    admin.site.unregister(_model)


class _TaskSelectWidget(UnfoldAdminSelectWidget, TaskSelectWidget):  # type: ignore[misc]
    pass


class _PeriodicTaskForm(PeriodicTaskForm):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["task"].widget = UnfoldAdminTextInputWidget()
        self.fields["regtask"].widget = _TaskSelectWidget()


@admin.register(PeriodicTask)
class AuditedPeriodicTaskAdmin(AuditTrailMixin, PeriodicTaskAdmin, ModelAdmin):  # type: ignore[misc,type-arg]
    form = _PeriodicTaskForm


@admin.register(IntervalSchedule)
class UnfoldIntervalScheduleAdmin(IntervalScheduleAdmin, ModelAdmin):  # type: ignore[misc,type-arg]
    pass


@admin.register(CrontabSchedule)
class UnfoldCrontabScheduleAdmin(CrontabScheduleAdmin, ModelAdmin):  # type: ignore[misc,type-arg]
    pass


@admin.register(SolarSchedule)
class UnfoldSolarScheduleAdmin(SolarScheduleAdmin, ModelAdmin):  # type: ignore[misc,type-arg]
    pass


@admin.register(ClockedSchedule)
class UnfoldClockedScheduleAdmin(ClockedScheduleAdmin, ModelAdmin):  # type: ignore[misc,type-arg]
    pass


@admin.register(User)
class AuditedUserAdmin(AuditTrailMixin, UserAdmin, ModelAdmin):  # type: ignore[type-arg]
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


@admin.register(Group)
class UnfoldGroupAdmin(GroupAdmin, ModelAdmin):  # type: ignore[type-arg]
    pass
