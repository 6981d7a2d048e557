"""The customer data model: who the people and accounts are, and what they did.

``Event`` is append-only; the only update it ever sees is re-pointing when two customers
are merged (an anonymous visitor who logs in, a Segment ``alias``).
"""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone


class SubjectStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    BLOCKED = "blocked", "Blocked"


class Account(models.Model):
    """A B2B unit (a Segment *group*): a company, team or workspace."""

    external_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, blank=True)
    plan = models.CharField(max_length=64, blank=True)
    region = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=SubjectStatus.choices, default=SubjectStatus.ACTIVE
    )
    traits = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, help_text="When the account signed up.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        # Plain btree indexes in Meta: ``db_index=True`` on a CharField adds a second,
        # pattern-ops index on PostgreSQL that no lookup here uses and every write pays for.
        indexes = [
            models.Index(fields=("plan",), name="account_plan"),
            models.Index(fields=("region",), name="account_region"),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id


class Customer(models.Model):
    """One person. Anonymous until an event carries a ``userId`` (``external_id``)."""

    external_id = models.CharField(
        max_length=255, unique=True, null=True, blank=True, help_text="Your user id (userId)."
    )
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="customers"
    )
    email = models.CharField(max_length=254, blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, e.g. +14155550100.")
    time_zone = models.CharField(max_length=64, blank=True, help_text="IANA name; UTC if empty.")
    locale = models.CharField(max_length=35, blank=True)
    plan = models.CharField(max_length=64, blank=True)
    region = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=SubjectStatus.choices, default=SubjectStatus.ACTIVE
    )
    lifecycle_stage = models.CharField(max_length=32, default="new")
    traits = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(
        null=True, blank=True, help_text="Latest event time, kept to the minute."
    )
    created_at = models.DateTimeField(
        default=timezone.now,
        db_index=True,
        help_text="Signup time; set from the createdAt trait when sent.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        # Plain btree indexes (see Account.Meta): a stage change writes every index of the
        # row, so each one here is paid for by the sweep and the evaluator.
        indexes = [
            # Case-insensitive email lookups (API ?email=, admin search) use UPPER(email).
            models.Index(Upper("email"), name="customer_email_upper"),
            models.Index(fields=("email",), name="customer_email"),
            models.Index(fields=("phone",), name="customer_phone"),
            models.Index(fields=("plan",), name="customer_plan"),
            models.Index(fields=("region",), name="customer_region"),
            models.Index(fields=("lifecycle_stage",), name="customer_stage"),
        ]

    def __str__(self) -> str:
        return self.external_id or self.email or f"anonymous #{self.pk}"

    @property
    def is_anonymous(self) -> bool:
        return self.external_id is None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.time_zone or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")


class IdentityKind(models.TextChoices):
    ANONYMOUS = "anonymous", "Anonymous id"
    ALIAS = "alias", "Former user id (alias)"


class Identity(models.Model):
    """Another id that resolves to a customer: a device's anonymousId, or a merged userId."""

    kind = models.CharField(max_length=16, choices=IdentityKind.choices)
    value = models.CharField(max_length=255)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(fields=("kind", "value"), name="identity_unique_kind_value")
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class DevicePlatform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"
    WEB = "web", "Web push"


class Device(models.Model):
    """A push token on one platform. A token belongs to whoever used the device last."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=16, choices=DevicePlatform.choices)
    token = models.CharField(max_length=512)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("platform", "token"), name="device_unique_token")
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.token[:12]}…"


class Source(models.Model):
    """A named write key that product teams use to send events. Only a hash is stored."""

    name = models.CharField(max_length=100, unique=True)
    key_prefix = models.CharField(max_length=12, editable=False, help_text="To recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """A bearer token for the native REST API, acting as its user. Only a hash is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"


class EventType(models.TextChoices):
    TRACK = "track", "Track"
    PAGE = "page", "Page"
    SCREEN = "screen", "Screen"
    IDENTIFY = "identify", "Identify"
    GROUP = "group", "Group"
    ALIAS = "alias", "Alias"


class Event(models.Model):
    """One behavioural call, append-only. ``(source, message_id)`` makes replays no-ops."""

    # No database-level FK constraints on this append-only table: the deferred per-row checks
    # (a FOR KEY SHARE per event, every event of every batch on the same source row) cost a
    # third of ingest throughput. Integrity is kept by the only two writers: events_ingest
    # locks each resolved customer once per batch and customers_merge waits for those locks
    # (see both). PROTECT still stops ORM deletes of a source, customer or account with events.
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    message_id = models.CharField(max_length=255)
    customer = models.ForeignKey(
        Customer,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    account = models.ForeignKey(
        Account,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
        db_constraint=False,
        help_text="The customer's account when the event was received.",
    )
    type = models.CharField(max_length=16, choices=EventType.choices, default=EventType.TRACK)
    name = models.CharField(max_length=255, help_text="Event name; page or screen name.")
    properties = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(help_text="Client time, corrected for clock skew.")
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("source", "message_id"), name="event_unique_message")
        ]
        indexes = [
            # "this customer's events named X since T" is a range scan on this index.
            models.Index(
                fields=("customer", "name", "occurred_at"), name="event_customer_name_time"
            ),
            models.Index(fields=("customer", "occurred_at"), name="event_customer_time"),
            models.Index(
                fields=("account", "name", "occurred_at"),
                name="event_account_name_time",
                condition=models.Q(account__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name} @ {self.occurred_at:%Y-%m-%d %H:%M}"
