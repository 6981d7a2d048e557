"""``{% reports_dashboard %}``: the dashboard panel of the admin home, for users allowed to
see it (``reports.views.dashboard_panel_context``); nothing for the others."""

from __future__ import annotations

from typing import Any

from django import template

from reports.stats import percent
from reports.views import dashboard_panel_context

register = template.Library()


@register.inclusion_tag("admin/reports/dashboard.html", takes_context=True)
def reports_dashboard(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    if request is None:
        return {"reports_panel": None}
    return dashboard_panel_context(request)


@register.filter
def reports_number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


@register.filter
def reports_percent(value: float | None) -> str:
    return percent(value)
