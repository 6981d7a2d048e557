"""The admin base classes every Milepost ``ModelAdmin`` and inline inherits: Unfold's (the
admin theme), typed as Django's. Unfold ships no type information and its classes subclass
Django's, so mypy checks our admins against django-stubs."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin, StackedInline, TabularInline
else:
    from unfold.admin import ModelAdmin, StackedInline, TabularInline

__all__ = ["ModelAdmin", "StackedInline", "TabularInline"]
