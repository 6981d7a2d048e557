"""The dashboard's two shells: its JSON (staff with ``reports.view_reports``) and the
context of the panel on the admin home (nothing for anyone else)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from reports.dashboard import ChoiceError, dashboard_get
from reports.models import VIEW_REPORTS
from reports.panel import panel_draw

logger = logging.getLogger(__name__)

FORBIDDEN = "Reading reports needs the permission 'Can view reports and dashboards'."


def can_view_reports(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Active staff holding ``reports.view_reports`` (superusers hold every permission)."""
    if not isinstance(user, PermissionsMixin):
        return False  # anonymous
    return bool(user.is_active and getattr(user, "is_staff", False) and user.has_perm(VIEW_REPORTS))


@require_GET
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The dashboard as JSON for ``?milestone=<key>&journey=<key>`` (empty: the defaults);
    403 without the permission, 400 for a key that names nothing."""
    if not can_view_reports(request.user):
        return JsonResponse({"error": FORBIDDEN}, status=403)
    try:
        dashboard = dashboard_get(
            milestone=request.GET.get("milestone", ""), journey=request.GET.get("journey", "")
        )
    except ChoiceError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(dashboard.as_json())


def dashboard_panel_context(request: HttpRequest) -> dict[str, Any]:
    """What ``admin/reports/dashboard.html`` shows: no panel without the permission; with a
    key that names nothing, the default choice and the error. A failing read (a statement
    timeout, say) leaves the admin home usable: a note replaces the dashboard."""
    if not can_view_reports(request.user):
        return {"reports_panel": None}
    error = ""
    try:
        try:
            dashboard = dashboard_get(
                milestone=request.GET.get("milestone", ""), journey=request.GET.get("journey", "")
            )
        except ChoiceError as problem:
            error = str(problem)
            dashboard = dashboard_get()
    except DatabaseError:
        logger.exception("reports: the dashboard could not be computed")
        return {"reports_panel": None, "reports_unavailable": True}
    return {
        "reports_panel": panel_draw(dashboard),
        "reports_error": error,
        "reports_data_url": reverse("admin:reports_dashboard_data"),
    }
