"""Read-only representations of the messaging API, and the inbox's query parameters."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from consent.models import Channel, Topic
from messaging.models import Message, MessageStatus


class RenderedField(serializers.CharField):
    """One part of the rendered message named like the field ("" when it has none)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)

    def get_attribute(self, instance: Message) -> str:
        rendered = instance.rendered if isinstance(instance.rendered, dict) else {}
        return str(rendered.get(self.field_name, ""))


class InboxMessageSerializer(serializers.ModelSerializer[Message]):
    title = RenderedField()
    body = RenderedField()
    cta_label = RenderedField(help_text="The call to action's label.")
    cta_url = RenderedField(help_text="Where the call to action goes.")
    topic: serializers.SlugRelatedField[Topic] = serializers.SlugRelatedField(
        slug_field="key", read_only=True, help_text="Topic key."
    )
    read_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Null: unread.")

    class Meta:
        model = Message
        fields = (
            "id", "title", "body", "cta_label", "cta_url", "topic", "journey_key", "created_at",
            "read_at",
        )  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {"journey_key": {"help_text": "The journey that sent it; blank if none."}}


class InboxQuerySerializer(serializers.Serializer[None]):
    # Absent reads as false (a BooleanField's reading of a missing query parameter).
    unread = serializers.BooleanField(
        required=False, default=False, help_text="true: only the messages not read yet."
    )


class CheckSerializer(serializers.Serializer[dict[str, str]]):
    """What the delivery policy said about one channel it tried."""

    channel = serializers.ChoiceField(choices=Channel.choices, read_only=True)
    reason = serializers.CharField(
        read_only=True, help_text="Why the channel could not carry it; empty when it could."
    )
    detail = serializers.CharField(read_only=True)


class CustomerMessageSerializer(serializers.ModelSerializer[Message]):
    channels = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="The channels asked for, in priority order.",
    )
    channel = serializers.CharField(
        read_only=True, help_text="The channel chosen; empty when none could carry it."
    )
    status = serializers.ChoiceField(choices=MessageStatus.choices, read_only=True)
    reason = serializers.CharField(
        read_only=True,
        help_text="Why it was not sent (now, or at all): a reason code of "
        "`messaging.reasons`; empty for a message that went out.",
    )
    explanation = CheckSerializer(
        many=True,
        read_only=True,
        help_text="Each channel tried, in order, and what the policy said.",
    )
    topic: serializers.SlugRelatedField[Topic] = serializers.SlugRelatedField(
        slug_field="key", read_only=True, help_text="Topic key."
    )
    template = serializers.CharField(
        source="template_version.template.key",
        read_only=True,
        allow_null=True,
        help_text="Template key; null when nothing was rendered.",
    )
    template_version = serializers.IntegerField(
        source="template_version.number",
        read_only=True,
        allow_null=True,
        help_text="The template's version number.",
    )

    class Meta:
        model = Message
        fields = (
            "id",
            "channels",
            "channel",
            "status",
            "reason",
            "explanation",
            "topic",
            "is_transactional",
            "template",
            "template_version",
            "journey_key",
            "to_address",
            "send_after",
            "error",
            "created_at",
            "sent_at",
            "delivered_at",
            "opened_at",
            "clicked_at",
            "failed_at",
        )
        read_only_fields = fields
