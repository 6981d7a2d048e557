"""The admin sidebar (Unfold's ``SIDEBAR["navigation"]``), grouped by what a marketer does
rather than by Django app.

Each link is shown to whoever the admin index would show that model to: the model's own
``ModelAdmin`` decides (``has_module_permission`` and view-or-change permission), so the
sidebar never disagrees with the page it leads to: write keys and API tokens follow
``customers.admin.manages_keys``, the ops console ``ops.view_ops_console``. The dashboard is
the admin index itself and is listed for holders of ``reports.view_reports``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

from reports.views import can_view_reports

Check = Callable[[HttpRequest], bool]


def may_open(app_label: str, model_name: str) -> Check:
    """Whether the request's user may open the model's list page, as the admin index decides."""

    def check(request: HttpRequest) -> bool:
        model_admin = admin.site._registry.get(apps.get_model(app_label, model_name))
        return model_admin is not None and bool(
            model_admin.has_module_permission(request)
            and model_admin.has_view_or_change_permission(request)
        )

    return check


def may_view_reports(request: HttpRequest) -> bool:
    return can_view_reports(request.user)


#: The sidebar: (group, ((title, icon, "app_label.model") or the dashboard, ...)).
DASHBOARD: Final = "dashboard"
SIDEBAR: Final[tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...]] = (
    ("Milestones", (
        ("Definitions", "flag", "milestones.milestonedefinition"),
        ("Lifecycle stages", "stairs", "milestones.lifecyclestage"),
        ("Progress", "progress_activity", "milestones.progress"),
        ("Outcomes", "task_alt", "milestones.milestoneoutcome"),
        ("Backfills", "history", "milestones.backfill"),
        ("Definition changes", "edit_note", "milestones.definitionchange"),
        ("Stage changes", "swap_vert", "milestones.stagechange"),
    )),
    ("Journeys", (
        ("Journeys", "route", "journeys.journey"),
        ("Enrollments", "group_add", "journeys.enrollment"),
        ("Teams", "groups", "journeys.team"),
        ("Notices", "notifications", "journeys.notice"),
        ("Webhook endpoints", "webhook", "journeys.webhookendpoint"),
    )),
    ("Templates", (
        ("Templates", "mail", "messaging.template"),
        ("Frequency caps", "speed", "messaging.frequencycap"),
        ("Messages", "outbox", "messaging.message"),
    )),
    ("Audience", (
        ("Customers", "person", "customers.customer"),
        ("Accounts", "domain", "customers.account"),
        ("Events", "bolt", "customers.event"),
        ("Identities", "badge", "customers.identity"),
        ("Devices", "smartphone", "customers.device"),
        # Customers and accounts by their state on a milestone: the progress list,
        # filtered by milestone and state (achieved, missed, in progress, late).
        ("Segments by milestone state", "filter_alt", "milestones.progress"),
    )),
    ("Consent", (
        ("Topics", "topic", "consent.topic"),
        ("Subscriptions", "mark_email_read", "consent.subscription"),
        ("Consent records", "fact_check", "consent.consentrecord"),
        ("Suppressions", "block", "consent.suppression"),
        ("Region policies", "public", "consent.regionpolicy"),
        ("Quiet hours", "bedtime", "consent.quiethours"),
        ("Preferences", "tune", "consent.preference"),
    )),
    ("Reports", (
        ("Dashboard", "monitoring", DASHBOARD),
        ("Audit trail", "manage_search", "audit.auditentry"),
    )),
    ("Operations", (
        ("Ops console", "terminal", "ops.console"),
        ("Beat schedules", "schedule", "django_celery_beat.periodictask"),
        ("Intervals", "timer", "django_celery_beat.intervalschedule"),
        ("Crontabs", "event_repeat", "django_celery_beat.crontabschedule"),
        ("Solar events", "wb_twilight", "django_celery_beat.solarschedule"),
        ("Clocked", "alarm", "django_celery_beat.clockedschedule"),
        ("Write keys (sources)", "key", "customers.source"),
        ("API tokens", "token", "customers.apitoken"),
        ("Users", "person", "auth.user"),
        ("Groups (roles)", "group", "auth.group"),
    )),
)  # fmt: skip


def _item(title: str, icon: str, target: str) -> dict[str, Any]:
    permission: Check
    if target == DASHBOARD:  # the admin index itself
        link, permission = reverse("admin:index"), may_view_reports
    else:
        app_label, model_name = target.split(".")
        link = reverse(f"admin:{app_label}_{model_name}_changelist")
        permission = may_open(app_label, model_name)
    return {"title": title, "icon": icon, "link": link, "permission": permission}


def sidebar_navigation(request: HttpRequest) -> list[dict[str, Any]]:
    """The groups and their links; Unfold hides a group none of whose links the user may open."""
    return [{"title": group, "items": [_item(*item) for item in items]} for group, items in SIDEBAR]
