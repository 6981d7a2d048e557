"""What every admin that writes through services shares: its buttons are POST-only views
at ``<object id>/<button>/`` (named ``<app>_<model>_<button>``), and saving the form stores
everything, so there are no related objects left to save."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpRequest
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from config.admin_base import ModelAdmin


class ServiceButtonsMixin(ModelAdmin):  # type: ignore[type-arg]
    #: Button names; each has a ``<name>_view(request, object_id)`` method.
    button_views: ClassVar[tuple[str, ...]] = ()

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        buttons = [
            path(
                f"<path:object_id>/{name.replace('_', '-')}/",
                self.admin_site.admin_view(require_POST(getattr(self, f"{name}_view"))),
                name=f"{info}_{name}",
            )
            for name in self.button_views
        ]
        return [*buttons, *super().get_urls()]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return  # the service stored everything; there are no relations to edit here
