"""Frequency caps: how many marketing messages a customer may get in a rolling window."""

from __future__ import annotations

from typing import Any, Final

from django import forms
from django.contrib import admin

from audit.admin import AuditTrailMixin
from config.admin_base import ModelAdmin
from messaging.models import CapScope, FrequencyCap
from milestones.forms import WindowField, window_text

#: The one target field each scope needs; the others stay empty.
_TARGETS: Final = {
    CapScope.CHANNEL: "channel",
    CapScope.TOPIC: "topic",
    CapScope.JOURNEY: "journey_key",
}


class FrequencyCapForm(forms.ModelForm):  # type: ignore[type-arg]
    window = WindowField(
        help_text="Rolling window, in words: “7 days”, “24 hours”, “2 weeks 3 days”. A slot "
        "frees when the oldest message in it is older than the window."
    )

    class Meta:
        model = FrequencyCap
        fields = (
            "name",
            "scope",
            "channel",
            "topic",
            "journey_key",
            "limit",
            "window",
            "is_active",
        )
        help_texts = {
            "name": "Shown in a message's “why” panel when this cap stops it, e.g. “3 emails "
            "a week”.",
            "scope": "Which marketing messages count and are capped: all of them, or only "
            "those on one channel, about one topic, or from one journey. Transactional "
            "messages never count.",
            "channel": "Only for a “one channel” cap.",
            "topic": "Only for a “one topic” cap.",
            "journey_key": "Only for a “one journey” cap: the journey's key.",
            "limit": "At most this many marketing messages per customer in the window.",
            "is_active": "Switched-off caps are ignored.",
        }

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        needed = _TARGETS.get(data.get("scope", ""))
        for scope, name in _TARGETS.items():
            if name == needed and not data.get(name):
                self.add_error(name, f"A “{scope.label.lower()}” cap needs this.")
            elif name != needed and data.get(name):
                self.add_error(name, f"Only for a “{scope.label.lower()}” cap; leave it empty.")
        window = data.get("window")
        if window is not None and window.total_seconds() <= 0:
            self.add_error("window", "Give a window longer than zero.")
        return data


@admin.register(FrequencyCap)
class FrequencyCapAdmin(AuditTrailMixin, ModelAdmin):  # type: ignore[type-arg]
    form = FrequencyCapForm
    list_display = ("name", "scope", "applies_to", "limit", "window_label", "is_active")
    list_filter = ("scope", "is_active")
    list_select_related = ("topic",)
    search_fields = ("name",)

    @admin.display(description="applies to")
    def applies_to(self, cap: FrequencyCap) -> str:
        if cap.scope == CapScope.CHANNEL:
            return cap.get_channel_display()
        if cap.scope == CapScope.TOPIC:
            return str(cap.topic or "—")
        if cap.scope == CapScope.JOURNEY:
            return cap.journey_key
        return "all marketing"

    @admin.display(description="window", ordering="window")
    def window_label(self, cap: FrequencyCap) -> str:
        return window_text(cap.window)
