"""Query-string filters of the journey list."""

from __future__ import annotations

import django_filters

from journeys.models import Journey, JourneyStatus


class JourneyFilter(django_filters.FilterSet):  # type: ignore[misc]
    status = django_filters.ChoiceFilter(choices=JourneyStatus.choices)

    class Meta:
        model = Journey
        fields: list[str] = []
