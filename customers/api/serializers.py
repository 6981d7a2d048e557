"""Read-only representations for the native API, and the events endpoint's query parameters."""

from __future__ import annotations

from rest_framework import serializers

from customers.models import Account, Customer, Device, Event, EventType, Identity

# Enough to recognise a device in a support conversation; the token itself is a credential.
_TOKEN_PREFIX_LENGTH = 12

_PROFILE_FIELDS = (
    "id",
    "external_id",
    "email",
    "phone",
    "time_zone",
    "locale",
    "plan",
    "region",
    "status",
    "lifecycle_stage",
    "traits",
    "first_seen",
    "last_seen",
    "created_at",
    "updated_at",
)
_ACCOUNT_FIELDS = (
    "id",
    "external_id",
    "name",
    "plan",
    "region",
    "status",
    "traits",
    "created_at",
    "updated_at",
)


class AccountSummarySerializer(serializers.ModelSerializer[Account]):
    class Meta:
        model = Account
        fields = ("id", "external_id", "name")
        read_only_fields = fields


class AccountSerializer(serializers.ModelSerializer[Account]):
    class Meta:
        model = Account
        fields = _ACCOUNT_FIELDS
        read_only_fields = fields


class AccountDetailSerializer(serializers.ModelSerializer[Account]):
    customer_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Account
        fields = (*_ACCOUNT_FIELDS, "customer_count")
        read_only_fields = fields


class IdentitySerializer(serializers.ModelSerializer[Identity]):
    class Meta:
        model = Identity
        fields = ("kind", "value")
        read_only_fields = fields


class DeviceSerializer(serializers.ModelSerializer[Device]):
    token_prefix = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = ("platform", "token_prefix", "is_active", "last_seen")
        read_only_fields = fields

    def get_token_prefix(self, device: Device) -> str:
        # At most half of a (short) token, so the whole token is never in a response.
        return device.token[: min(_TOKEN_PREFIX_LENGTH, len(device.token) // 2)]


class CustomerSerializer(serializers.ModelSerializer[Customer]):
    account = AccountSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Customer
        fields = (*_PROFILE_FIELDS, "account")
        read_only_fields = fields


class CustomerDetailSerializer(serializers.ModelSerializer[Customer]):
    account = AccountSummarySerializer(read_only=True, allow_null=True)
    identities = IdentitySerializer(many=True, read_only=True)
    devices = DeviceSerializer(many=True, read_only=True)

    class Meta:
        model = Customer
        fields = (*_PROFILE_FIELDS, "account", "identities", "devices")
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer[Event]):
    class Meta:
        model = Event
        fields = (
            "id",
            "source",
            "message_id",
            "account",
            "type",
            "name",
            "properties",
            "context",
            "occurred_at",
            "received_at",
        )
        read_only_fields = fields


class EventQuerySerializer(serializers.Serializer[None]):
    """Query parameters of a customer's event list; ``since`` is inclusive, ``until`` is not."""

    name = serializers.CharField(required=False, help_text="Exact event name.")
    type = serializers.ChoiceField(choices=EventType.choices, required=False)
    since = serializers.DateTimeField(
        required=False, help_text="ISO 8601; events at or after this time."
    )
    until = serializers.DateTimeField(
        required=False, help_text="ISO 8601; events before this time."
    )
