"""Read-only representations for the journeys API.

A journey's own fields are its working copy (what the next go-live would snapshot); the
definition customers actually run through is ``active_definition``, the live version."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from journeys.models import Enrollment, Journey, JourneyVersion, StepRun
from messaging.models import MessageStatus

_DEFINITION_FIELDS = (
    "trigger",
    "entry_rules",
    "reentry",
    "reentry_days",
    "priority",
    "holdout_percent",
    "steps",
    "goal",
    "exit_when",
)
_JOURNEY_FIELDS = (
    "key",
    "name",
    "description",
    "status",
    "trigger",
    "priority",
    "holdout_percent",
    "active_version",
    "enrollment_counts",
    "created_at",
    "updated_at",
)


class EnrollmentCountsSerializer(serializers.Serializer[dict[str, int]]):
    active = serializers.IntegerField()
    waiting = serializers.IntegerField()
    completed = serializers.IntegerField()
    exited = serializers.IntegerField()
    holdout = serializers.IntegerField(help_text="Held out: the control group.")
    failed = serializers.IntegerField()


def _created_by() -> serializers.SlugRelatedField[Any]:
    return serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who made it go live."
    )


class JourneyVersionSummarySerializer(serializers.ModelSerializer[JourneyVersion]):
    created_by = _created_by()

    class Meta:
        model = JourneyVersion
        fields = ("number", "created_at", "created_by")
        read_only_fields = fields


class ActiveDefinitionSerializer(serializers.ModelSerializer[JourneyVersion]):
    created_by = _created_by()

    class Meta:
        model = JourneyVersion
        fields = ("number", "created_at", "created_by", *_DEFINITION_FIELDS)
        read_only_fields = fields


# The counts come from the context (version id -> counts, ``selectors.enrollment_counts``):
# one aggregate for the whole page instead of one query per journey.
class JourneySerializer(serializers.ModelSerializer[Journey]):
    active_version = serializers.IntegerField(
        source="active_version.number",
        read_only=True,
        allow_null=True,
        help_text="The live version's number; null until the journey first goes live.",
    )
    enrollment_counts = serializers.SerializerMethodField(
        help_text="Enrollments per state on the active version; null without one."
    )

    class Meta:
        model = Journey
        fields = _JOURNEY_FIELDS
        read_only_fields = fields

    @extend_schema_field(EnrollmentCountsSerializer(allow_null=True))
    def get_enrollment_counts(self, journey: Journey) -> dict[str, int] | None:
        if journey.active_version_id is None:
            return None
        counts: dict[str, int] = self.context["enrollment_counts"][journey.active_version_id]
        return counts


class JourneyDetailSerializer(JourneySerializer):
    """The whole working copy, the live version's definition and every version."""

    active_definition = ActiveDefinitionSerializer(
        source="active_version",
        read_only=True,
        allow_null=True,
        help_text="The live version: what enrolled customers run through. Null until the "
        "journey first goes live.",
    )
    versions = JourneyVersionSummarySerializer(many=True, read_only=True, help_text="Newest first.")

    class Meta:
        model = Journey
        fields = (
            "key",
            "name",
            "description",
            "status",
            *_DEFINITION_FIELDS,
            "active_version",
            "enrollment_counts",
            "active_definition",
            "versions",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class StepMessageSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField(read_only=True)
    status = serializers.ChoiceField(choices=MessageStatus.choices, read_only=True)
    channel = serializers.CharField(
        read_only=True, help_text="The channel chosen; empty when none could carry it."
    )
    reason = serializers.CharField(
        read_only=True,
        help_text="Why it was not sent (now, or at all): a reason code of "
        "`messaging.reasons`; empty for a message that went out.",
    )


# ``message`` is annotated by ``selectors.customer_enrollments``.
class StepRunSerializer(serializers.ModelSerializer[StepRun]):
    message = StepMessageSerializer(
        read_only=True,
        allow_null=True,
        help_text="The message a send step handed to the outbox; null for other steps.",
    )
    result = serializers.JSONField(
        read_only=True,
        help_text="What the step did, by type: templates (send), next (branch), variant "
        "(split), stage (update), timed_out (wait).",
    )

    class Meta:
        model = StepRun
        fields = ("step_key", "attempt", "status", "result", "at", "message")
        read_only_fields = fields


class EnrollmentSerializer(serializers.ModelSerializer[Enrollment]):
    journey = serializers.CharField(source="journey.key", read_only=True, help_text="Journey key.")
    version = serializers.IntegerField(
        source="version.number", read_only=True, help_text="The version it runs through."
    )
    variants = serializers.DictField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Split step key -> the variant taken.",
    )
    steps = StepRunSerializer(
        source="runs", many=True, read_only=True, help_text="The step runs, in the order run."
    )

    class Meta:
        model = Enrollment
        fields = (
            "id",
            "journey",
            "version",
            "state",
            "current_step",
            "entered_at",
            "next_run_at",
            "finished_at",
            "exit_reason",
            "converted_at",
            "variants",
            "steps",
        )
        read_only_fields = fields
