"""The preference centre form: a box per topic and channel, a frequency choice and a pause."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.http import QueryDict

from consent.preferences import Chosen, PreferenceCentre, TopicChoice

NO_LIMIT = "none"
WEEKLY = "weekly"
CUSTOM = "custom"
FREQUENCIES = (
    (NO_LIMIT, "No limit"),
    (WEEKLY, "At most one marketing message a week"),
    (CUSTOM, "At most a number of marketing messages over a number of days"),
)
MAX_MESSAGES = 100
MAX_PERIOD_DAYS = 365
LONGEST_PAUSE = dt.timedelta(days=365)


class PreferenceForm(forms.Form):
    frequency = forms.ChoiceField(
        choices=FREQUENCIES, widget=forms.RadioSelect, label="How often may we send you marketing?"
    )
    max_marketing = forms.IntegerField(
        min_value=1, max_value=MAX_MESSAGES, required=False, label="Number of messages"
    )
    period_days = forms.IntegerField(
        min_value=1, max_value=MAX_PERIOD_DAYS, required=False, label="Number of days"
    )
    pause_until = forms.DateField(
        required=False,
        label="Pause all marketing until",
        help_text="Messages resume on this date. Leave empty for no pause.",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, centre: PreferenceCentre, data: QueryDict | None = None) -> None:
        super().__init__(data, initial=_initial(centre))
        self.centre = centre
        for choice in centre.choices():
            self.fields[choice.field_name] = forms.BooleanField(
                required=False, label=choice.name, help_text=choice.description
            )
        self.latest_pause = centre.today + LONGEST_PAUSE
        pause_widget = self.fields["pause_until"].widget
        pause_widget.attrs["min"] = (centre.today + dt.timedelta(days=1)).isoformat()
        pause_widget.attrs["max"] = self.latest_pause.isoformat()

    def sections(self) -> list[tuple[str, list[tuple[TopicChoice, forms.BoundField]]]]:
        """For the template: each channel's label with its topics and their boxes."""
        return [
            (section.label, [(choice, self[choice.field_name]) for choice in section.topics])
            for section in self.centre.sections
        ]

    def clean_pause_until(self) -> dt.date | None:
        day: dt.date | None = self.cleaned_data["pause_until"]
        if day is None:
            return None
        if day <= self.centre.today:
            raise forms.ValidationError("Choose a date in the future.", code="past")
        if day > self.latest_pause:
            raise forms.ValidationError(
                f"Choose a date at most one year ahead (on or before "
                f"{self.latest_pause.isoformat()}).",
                code="too_far",
            )
        return day

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("frequency") == CUSTOM:
            if data.get("max_marketing") is None and "max_marketing" not in self.errors:
                self.add_error("max_marketing", "Enter how many messages we may send.")
            if data.get("period_days") is None and "period_days" not in self.errors:
                self.add_error("period_days", "Enter over how many days.")
        return data

    def chosen(self) -> Chosen:
        data = self.cleaned_data
        frequency = data["frequency"]
        if frequency == WEEKLY:
            limit: tuple[int | None, int | None] = (1, 7)
        elif frequency == CUSTOM:
            limit = (data["max_marketing"], data["period_days"])
        else:
            limit = (None, None)
        return Chosen(
            subscribed=frozenset(
                (choice.channel, choice.key)
                for choice in self.centre.choices()
                if data[choice.field_name]
            ),
            max_marketing=limit[0],
            period_days=limit[1],
            pause_date=data["pause_until"],
        )


def _initial(centre: PreferenceCentre) -> dict[str, Any]:
    initial: dict[str, Any] = {choice.field_name: choice.is_checked for choice in centre.choices()}
    if centre.max_marketing is None:
        initial["frequency"] = NO_LIMIT
    elif (centre.max_marketing, centre.period_days) == (1, 7):
        initial["frequency"] = WEEKLY
    else:
        initial["frequency"] = CUSTOM
        initial["max_marketing"] = centre.max_marketing
        initial["period_days"] = centre.period_days
    initial["pause_until"] = centre.pause_date
    return initial
