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
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

from reports.models import VIEW_REPORTS

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
    return bool(request.user.has_perm(VIEW_REPORTS))


def _model(title: str, icon: str, app_label: str, model_name: str) -> dict[str, Any]:
    return {
        "title": title,
        "icon": icon,
        "link": reverse(f"admin:{app_label}_{model_name}_changelist"),
        "permission": may_open(app_label, model_name),
    }


def sidebar_navigation(request: HttpRequest) -> list[dict[str, Any]]:
    """The groups and their links; Unfold hides a group none of whose links the user may open."""
    return [
        {
            "title": "Milestones",
            "items": [
                _model("Definitions", "flag", "milestones", "milestonedefinition"),
                _model("Lifecycle stages", "stairs", "milestones", "lifecyclestage"),
                _model("Progress", "progress_activity", "milestones", "progress"),
                _model("Outcomes", "task_alt", "milestones", "milestoneoutcome"),
                _model("Backfills", "history", "milestones", "backfill"),
                _model("Definition changes", "edit_note", "milestones", "definitionchange"),
                _model("Stage changes", "swap_vert", "milestones", "stagechange"),
            ],
        },
        {
            "title": "Journeys",
            "items": [
                _model("Journeys", "route", "journeys", "journey"),
                _model("Enrollments", "group_add", "journeys", "enrollment"),
                _model("Teams", "groups", "journeys", "team"),
                _model("Notices", "notifications", "journeys", "notice"),
                _model("Webhook endpoints", "webhook", "journeys", "webhookendpoint"),
            ],
        },
        {
            "title": "Templates",
            "items": [
                _model("Templates", "mail", "messaging", "template"),
                _model("Frequency caps", "speed", "messaging", "frequencycap"),
                _model("Messages", "outbox", "messaging", "message"),
            ],
        },
        {
            "title": "Audience",
            "items": [
                _model("Customers", "person", "customers", "customer"),
                _model("Accounts", "domain", "customers", "account"),
                _model("Events", "bolt", "customers", "event"),
                _model("Identities", "badge", "customers", "identity"),
                _model("Devices", "smartphone", "customers", "device"),
                # Customers and accounts by their state on a milestone: the progress list,
                # filtered by milestone and state (achieved, missed, in progress, late).
                _model("Segments by milestone state", "filter_alt", "milestones", "progress"),
            ],
        },
        {
            "title": "Consent",
            "items": [
                _model("Topics", "topic", "consent", "topic"),
                _model("Subscriptions", "mark_email_read", "consent", "subscription"),
                _model("Consent records", "fact_check", "consent", "consentrecord"),
                _model("Suppressions", "block", "consent", "suppression"),
                _model("Region policies", "public", "consent", "regionpolicy"),
                _model("Quiet hours", "bedtime", "consent", "quiethours"),
                _model("Preferences", "tune", "consent", "preference"),
            ],
        },
        {
            "title": "Reports",
            "items": [
                {
                    "title": "Dashboard",
                    "icon": "monitoring",
                    "link": reverse("admin:index"),
                    "permission": may_view_reports,
                },
                _model("Audit trail", "manage_search", "audit", "auditentry"),
            ],
        },
        {
            "title": "Operations",
            "items": [
                _model("Ops console", "terminal", "ops", "console"),
                _model("Beat schedules", "schedule", "django_celery_beat", "periodictask"),
                _model("Intervals", "timer", "django_celery_beat", "intervalschedule"),
                _model("Crontabs", "event_repeat", "django_celery_beat", "crontabschedule"),
                _model("Solar events", "wb_twilight", "django_celery_beat", "solarschedule"),
                _model("Clocked", "alarm", "django_celery_beat", "clockedschedule"),
                _model("Write keys (sources)", "key", "customers", "source"),
                _model("API tokens", "token", "customers", "apitoken"),
                _model("Users", "person", "auth", "user"),
                _model("Groups (roles)", "group", "auth", "group"),
            ],
        },
    ]
