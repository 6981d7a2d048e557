"""Read-only representations for the milestones API, and the dry run's and the feed's input.

Durations (windows) are ISO 8601 (``P7DT00H00M00S``) both ways."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from milestones import dryrun
from milestones.api import selectors
from milestones.models import (
    Anchor,
    MilestoneDefinition,
    MilestoneOutcome,
    MilestoneVersion,
    OutcomeKind,
    Progress,
    Unit,
)

#: What a dry run may evaluate at most, per request.
DRY_RUN_MAX_LIMIT = 200_000
DRY_RUN_MAX_SAMPLE_SIZE = 100

_SNAPSHOT_FIELDS = selectors.PREVIEW_FIELDS
_DEFINITION_FIELDS = (
    "key",
    "name",
    "description",
    "kind",
    "unit",
    "status",
    "parent",
    "active_version",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
)


class IsoDurationField(serializers.DurationField):
    """ISO 8601 out (``P7DT00H00M00S``); in, ISO 8601 or Django's ``7 00:00:00``."""

    format = "iso-8601"
    default_error_messages = {
        "invalid": "Duration has wrong format. Use ISO 8601, e.g. P7D or PT36H.",
    }


class ActiveVersionSerializer(serializers.ModelSerializer[MilestoneVersion]):
    window = IsoDurationField(allow_null=True, read_only=True)

    class Meta:
        model = MilestoneVersion
        fields = ("number", *_SNAPSHOT_FIELDS, "activated_at")
        read_only_fields = fields


class VersionSummarySerializer(serializers.ModelSerializer[MilestoneVersion]):
    class Meta:
        model = MilestoneVersion
        fields = ("number", "created_at", "activated_at", "retired_at")
        read_only_fields = fields


class WorkingCopySerializer(serializers.ModelSerializer[MilestoneDefinition]):
    """What the next activation would snapshot, and what a dry run evaluates."""

    window = IsoDurationField(allow_null=True, read_only=True)

    class Meta:
        model = MilestoneDefinition
        fields = _SNAPSHOT_FIELDS
        read_only_fields = fields


class ProgressCountsSerializer(serializers.Serializer[dict[str, int]]):
    in_progress = serializers.IntegerField()
    achieved = serializers.IntegerField()
    missed = serializers.IntegerField()
    ineligible = serializers.IntegerField()


def _slug_of(field: str, help_text: str) -> serializers.SlugRelatedField[Any]:
    return serializers.SlugRelatedField(
        slug_field=field, read_only=True, allow_null=True, help_text=help_text
    )


class MilestoneDefinitionSerializer(serializers.ModelSerializer[MilestoneDefinition]):
    # The stubs know ``parent`` as a field's own serializer; here it is a declared field.
    parent = _slug_of("key", "The parent milestone's key.")  # type: ignore[assignment]
    active_version = ActiveVersionSerializer(read_only=True, allow_null=True)
    created_by = _slug_of("username", "Who created it.")
    updated_by = _slug_of("username", "Who changed it last.")

    class Meta:
        model = MilestoneDefinition
        fields = _DEFINITION_FIELDS
        read_only_fields = fields


class MilestoneDefinitionDetailSerializer(MilestoneDefinitionSerializer):
    working_copy = serializers.SerializerMethodField()
    versions = VersionSummarySerializer(many=True, read_only=True)
    progress_counts = serializers.SerializerMethodField(
        help_text="Subjects per progress state on the active version; null without one."
    )

    class Meta:
        model = MilestoneDefinition
        fields = (*_DEFINITION_FIELDS, "working_copy", "versions", "progress_counts")
        read_only_fields = fields

    @extend_schema_field(WorkingCopySerializer)
    def get_working_copy(self, definition: MilestoneDefinition) -> dict[str, Any]:
        return dict(WorkingCopySerializer(definition).data)

    @extend_schema_field(ProgressCountsSerializer(allow_null=True))
    def get_progress_counts(self, definition: MilestoneDefinition) -> dict[str, int] | None:
        if definition.active_version_id is None:
            return None
        return selectors.progress_counts(version_id=definition.active_version_id)


class ProgressSerializer(serializers.ModelSerializer[Progress]):
    definition = serializers.CharField(source="definition.key", read_only=True)
    definition_name = serializers.CharField(source="definition.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    is_current = serializers.SerializerMethodField(
        help_text="Whether the row is on the definition's active version (others are history)."
    )
    percent = serializers.IntegerField(read_only=True)
    detail = serializers.JSONField(
        read_only=True,
        help_text="Per-condition progress: {label, done, total, achieved_at, children?}.",
    )

    class Meta:
        model = Progress
        fields = (
            "definition",
            "definition_name",
            "version",
            "is_current",
            "state",
            "ineligible_reason",
            "anchor_at",
            "deadline_at",
            "achieved_at",
            "missed_at",
            "is_late",
            "done",
            "total",
            "percent",
            "label",
            "detail",
            "evaluated_at",
        )
        read_only_fields = fields

    def get_is_current(self, progress: Progress) -> bool:
        return progress.version_id == progress.definition.active_version_id


class OutcomeSerializer(serializers.ModelSerializer[MilestoneOutcome]):
    """An outcome as the feed serves it; ``outcomes_feed`` annotates the joined values."""

    definition = serializers.CharField(source="definition_key", read_only=True)
    version = serializers.IntegerField(source="version_number", read_only=True)
    subject_external_id = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The customer's or account's external id (null for an anonymous customer "
        "or a subject merged away).",
    )

    class Meta:
        model = MilestoneOutcome
        fields = (
            "id",
            "definition",
            "version",
            "unit",
            "subject_id",
            "subject_external_id",
            "kind",
            "is_late",
            "occurred_at",
            "recorded_at",
        )
        read_only_fields = fields


class OutcomeQuerySerializer(serializers.Serializer[None]):
    """Filters of the outcomes feed; any combination, with any cursor."""

    definition = serializers.SlugField(required=False, help_text="Definition key.")
    kind = serializers.ChoiceField(choices=OutcomeKind.choices, required=False)
    unit = serializers.ChoiceField(choices=Unit.choices, required=False)
    subject_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Customer or account id."
    )


class DryRunRequestSerializer(serializers.Serializer[None]):
    """How much to evaluate, and optional edits of the working copy to preview unsaved."""

    limit = serializers.IntegerField(
        required=False,
        default=50_000,
        min_value=1,
        max_value=DRY_RUN_MAX_LIMIT,
        help_text="Subjects to evaluate at most, in id order.",
    )
    sample_size = serializers.IntegerField(
        required=False,
        default=10,
        min_value=0,
        max_value=DRY_RUN_MAX_SAMPLE_SIZE,
        help_text="Subject ids listed per bucket.",
    )
    condition = serializers.JSONField(required=False, help_text="A condition tree.")
    anchor = serializers.ChoiceField(choices=Anchor.choices, required=False)
    anchor_event = serializers.CharField(required=False, allow_blank=True, max_length=255)
    anchor_milestone = serializers.SlugField(required=False, allow_blank=True, max_length=100)
    window = IsoDurationField(
        required=False, allow_null=True, help_text="ISO 8601; null for no deadline."
    )
    eligibility = serializers.JSONField(required=False, help_text="Eligibility rules.")

    def overrides(self) -> dict[str, object]:
        """The working-copy fields the request gives, to apply to an unsaved copy."""
        return {
            name: value
            for name, value in self.validated_data.items()
            if name in selectors.PREVIEW_FIELDS
        }


class DryRunCountsSerializer(serializers.Serializer[dict[str, int]]):
    achieved = serializers.IntegerField()
    missed = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    ineligible = serializers.IntegerField()
    not_started = serializers.IntegerField(help_text="No anchor yet (e.g. the event never seen).")


class DryRunSamplesSerializer(serializers.Serializer[dict[str, list[int]]]):
    achieved = serializers.ListField(child=serializers.IntegerField())
    missed = serializers.ListField(child=serializers.IntegerField())
    in_progress = serializers.ListField(child=serializers.IntegerField())
    ineligible = serializers.ListField(child=serializers.IntegerField())
    not_started = serializers.ListField(child=serializers.IntegerField())


class DryRunSerializer(serializers.Serializer[dryrun.DryRun]):
    subjects = serializers.IntegerField(read_only=True, help_text="Subjects evaluated.")
    counts = DryRunCountsSerializer(read_only=True, help_text="Subjects per bucket.")
    samples = DryRunSamplesSerializer(
        read_only=True, help_text="The first subject ids of each bucket, in id order."
    )
    is_truncated = serializers.BooleanField(
        read_only=True, help_text="More subjects exist past the limit."
    )
    evaluated_at = serializers.DateTimeField(read_only=True)


class DefinitionErrorsSerializer(serializers.Serializer[None]):
    """A working copy that does not validate: ``errors`` maps each field to its problem."""

    detail = serializers.CharField()
    # A declared field, not the ``errors`` property the stubs know (schema only).
    errors = serializers.DictField(child=serializers.CharField())  # type: ignore[assignment]
