"""The consent API's representations, and the subscription change request with its errors."""

from __future__ import annotations

from typing import Any, Final

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from consent.api.selectors import CustomerSubscriptions, SubscriptionState, topics_for_keys
from consent.models import Channel, ConsentMode, ConsentRecord, SubscriptionStatus, Topic
from consent.selectors import RegionRule

#: Changes one request may carry.
MAX_CHANGES: Final = 100
#: What a client may ask for: "pending" is reached only through a double opt-in region, and
#: "unknown" is the absence of a choice, not a choice.
SETTABLE_STATUSES: Final = (SubscriptionStatus.OPTED_IN, SubscriptionStatus.OPTED_OUT)


@extend_schema_field(
    {"type": "string", "enum": SubscriptionStatus.values},
    component_name="SubscriptionStatusEnum",
)
class SubscriptionStatusField(serializers.ChoiceField):
    """A stored consent status. One named schema component for every use, so the two
    components that show it do not make the enum's name collide with other ``status`` enums."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=SubscriptionStatus.choices, **kwargs)


class RegionRuleSerializer(serializers.Serializer[RegionRule]):
    mode = serializers.ChoiceField(
        choices=ConsentMode.choices,
        read_only=True,
        help_text="How `unknown` reads: `opt_out` sends marketing until an opt-out, "
        "`opt_in` only after an opt-in.",
    )
    requires_double_opt_in = serializers.BooleanField(
        read_only=True, help_text="An email opt-in is `pending` until the customer confirms it."
    )


class SubscriptionStateSerializer(serializers.Serializer[SubscriptionState]):
    channel = serializers.ChoiceField(choices=Channel.choices, read_only=True)
    topic = serializers.SlugField(read_only=True, help_text="Topic key.")
    topic_name = serializers.CharField(read_only=True)
    is_transactional = serializers.BooleanField(read_only=True)
    status = SubscriptionStatusField(
        read_only=True, help_text="As stored; `unknown` when the customer never chose."
    )
    effective = serializers.BooleanField(
        read_only=True,
        help_text="Whether marketing on this topic and channel goes out under the region "
        "rule (always true for a transactional topic).",
    )
    updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Null when the customer never chose."
    )


class CustomerSubscriptionsSerializer(serializers.Serializer[CustomerSubscriptions]):
    region = serializers.CharField(read_only=True, help_text="The customer's region.")
    rule = RegionRuleSerializer(
        read_only=True, help_text="The consent rule of the region (or the default)."
    )
    subscriptions = SubscriptionStateSerializer(many=True, read_only=True)


class SubscriptionChangeSerializer(serializers.Serializer[None]):
    channel = serializers.ChoiceField(choices=Channel.choices)
    topic = serializers.SlugField(
        max_length=64,
        allow_null=True,
        help_text="Topic key, or null for every active marketing topic. Required: leaving it "
        "out never means every topic.",
    )
    status = serializers.ChoiceField(choices=[(s.value, s.label) for s in SETTABLE_STATUSES])

    def validate_topic(self, key: str | None) -> str | None:
        if key is None:
            return None
        topic: Topic | None = self.context["topics"].get(key)
        if topic is None:
            raise serializers.ValidationError("No topic with this key.")
        if topic.is_transactional:
            raise serializers.ValidationError(
                "A transactional topic is sent without marketing consent; it has none to change."
            )
        return key


class SubscriptionPatchSerializer(serializers.Serializer[None]):
    """Changes of a customer's consent, applied all or nothing, with what the customer was
    shown."""

    changes: serializers.ListSerializer[Any] = serializers.ListSerializer(
        child=SubscriptionChangeSerializer(),
        allow_empty=False,
        max_length=MAX_CHANGES,
        help_text=f"From 1 to {MAX_CHANGES} changes, applied in order.",
    )
    wording = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        trim_whitespace=False,
        help_text="What the customer was shown, kept in the consent ledger as evidence.",
    )

    @classmethod
    def for_data(cls, data: Any) -> SubscriptionPatchSerializer:
        """The serializer for a request body, with every topic it names looked up at once."""
        return cls(data=data, context={"topics": topics_for_keys(_topic_keys(data))})


def _topic_keys(data: Any) -> set[str]:
    changes = data.get("changes") if isinstance(data, dict) else None
    if not isinstance(changes, list):
        return set()
    return {
        item["topic"]
        for item in changes
        if isinstance(item, dict) and isinstance(item.get("topic"), str)
    }


class ChangeErrorSerializer(serializers.Serializer[None]):
    index = serializers.IntegerField(
        allow_null=True, help_text="The item of `changes`; null for the body as a whole."
    )
    field = serializers.CharField(
        allow_null=True, help_text="The field of the item (or of the body); null for all of it."
    )
    error = serializers.CharField()


class ChangeErrorsSerializer(serializers.Serializer[None]):
    # A declared field, not the ``errors`` property the stubs know (schema only).
    errors = ChangeErrorSerializer(many=True)  # type: ignore[assignment]


def change_errors(errors: dict[str, Any]) -> list[dict[str, Any]]:
    """DRF's nested errors of ``SubscriptionPatchSerializer`` as one flat list, every bad item
    of ``changes`` with its index, in the order of the body."""
    flat: list[dict[str, Any]] = []
    for name, detail in errors.items():
        items = _item_errors(detail) if name == "changes" else None
        if items is not None:
            for index, item in items:
                for field, messages in item.items():
                    flat.extend(_entries(index, field, messages))
        elif isinstance(detail, dict):
            flat.extend(_entries(None, name, detail.get(api_settings.NON_FIELD_ERRORS_KEY, [])))
        else:
            flat.extend(_entries(None, name, detail))
    return flat


def _item_errors(detail: Any) -> list[tuple[int, dict[str, Any]]] | None:
    """The errors of each bad item of a list, or None when the list as a whole is bad. DRF
    keys them by index (only the bad items); older versions give one entry per item."""
    if isinstance(detail, dict) and detail and all(isinstance(k, int) for k in detail):
        return sorted(detail.items())
    if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        return [(index, item) for index, item in enumerate(detail) if item]
    return None


def _entries(index: int | None, field: str, messages: Any) -> list[dict[str, Any]]:
    name = None if field == api_settings.NON_FIELD_ERRORS_KEY else field
    return [{"index": index, "field": name, "error": str(message)} for message in messages]


class ConsentRecordSerializer(serializers.ModelSerializer[ConsentRecord]):
    topic: serializers.SlugRelatedField[Topic] = serializers.SlugRelatedField(
        slug_field="key",
        read_only=True,
        allow_null=True,
        help_text="Topic key; null for a change of every topic on the channel.",
    )
    status = SubscriptionStatusField(read_only=True)
    actor: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="The user who made the change (an API token's user, an admin), if any.",
    )

    class Meta:
        model = ConsentRecord
        fields = (
            "channel",
            "topic",
            "status",
            "source",
            "ip_address",
            "user_agent",
            "wording",
            "actor",
            "created_at",
        )
        read_only_fields = fields
