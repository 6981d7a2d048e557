"""The dashboard lives on the admin home (``templates/admin/index.html``); its model only
carries the permission and mounts the JSON at ``/admin/reports/dashboard/data.json``."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, path

from config.admin_base import ModelAdmin
from reports import views
from reports.models import Dashboard


@admin.register(Dashboard)
class DashboardAdmin(ModelAdmin):  # type: ignore[type-arg]
    def has_module_permission(self, request: HttpRequest) -> bool:
        return False  # no table and no list page: the app list does not show it

    def get_urls(self) -> list[URLPattern]:
        # Only the JSON: the model has no table for the default list and change pages.
        return [
            path(
                "data.json",
                self.admin_site.admin_view(views.dashboard_data),
                name="reports_dashboard_data",
            )
        ]
