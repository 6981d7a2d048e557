"""The reports app owns no table: this unmanaged model only carries its permission."""

from __future__ import annotations

from typing import Final

from django.db import models

#: Who may see the dashboard on the admin home and read its JSON.
VIEW_REPORTS: Final = "reports.view_reports"


class Dashboard(models.Model):
    """Never queried: ``managed = False`` and no default add/change/delete/view permissions
    leave only ``reports.view_reports``, which roles grant."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_reports", "Can view reports and dashboards")]
        verbose_name = "dashboard"
        verbose_name_plural = "dashboards"

    def __str__(self) -> str:
        return "dashboard"
