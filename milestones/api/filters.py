"""Query-string filters of the definition list."""

from __future__ import annotations

import django_filters

from milestones.models import DefinitionStatus, MilestoneDefinition, MilestoneKind, Unit


class MilestoneDefinitionFilter(django_filters.FilterSet):  # type: ignore[misc]
    status = django_filters.ChoiceFilter(choices=DefinitionStatus.choices)
    kind = django_filters.ChoiceFilter(choices=MilestoneKind.choices)
    unit = django_filters.ChoiceFilter(choices=Unit.choices)

    class Meta:
        model = MilestoneDefinition
        fields: list[str] = []
