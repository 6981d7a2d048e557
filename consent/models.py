"""Consent: topics, per-channel subscriptions, the append-only ledger, address suppressions,
region policies, quiet hours and a customer's own frequency choice (DESIGN.md §3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "Push"
    IN_APP = "in_app", "In-app"


class Topic(models.Model):
    """What a message is about ("product updates", "tips"): consent is given per topic."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Shown on the preference centre.")
    is_transactional = models.BooleanField(
        default=False,
        help_text="Receipts, security and account notices: sent without marketing consent "
        "and outside frequency caps, but never to a suppressed address.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class SubscriptionStatus(models.TextChoices):
    OPTED_IN = "opted_in", "Opted in"
    OPTED_OUT = "opted_out", "Opted out"
    UNKNOWN = "unknown", "Unknown"
    # An email opt-in in a double opt-in region, until the customer confirms it.
    PENDING = "pending", "Awaiting confirmation"


class Subscription(models.Model):
    """A customer's current consent for one channel and topic; history is in the ledger."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="subscriptions"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.UNKNOWN
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("customer", "channel", "topic"), name="subscription_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}/{self.topic_id}: {self.status}"


class ConsentSource(models.TextChoices):
    API = "api", "API"
    PREFERENCE_CENTRE = "preference_centre", "Preference centre"
    UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link"
    SMS_KEYWORD = "sms_keyword", "SMS keyword"
    BOUNCE = "bounce", "Bounce"
    COMPLAINT = "complaint", "Complaint"
    DOUBLE_OPT_IN = "double_opt_in", "Double opt-in confirmation"
    ADMIN = "admin", "Admin"


class AppendOnly(Exception):
    pass


class ConsentRecord(models.Model):
    """The append-only consent ledger: one row per change, with its evidence.

    Rows are never updated or deleted one by one (``save`` on a stored row and ``delete``
    raise); erasing a customer deletes that customer's rows in bulk (GDPR)."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="consent_records"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    topic = models.ForeignKey(
        Topic, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )  # null: every topic of the channel (an unsubscribe-all, an SMS STOP)
    status = models.CharField(max_length=16, choices=SubscriptionStatus.choices)
    source = models.CharField(max_length=32, choices=ConsentSource.choices)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    wording = models.TextField(blank=True, help_text="What the customer was shown.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The admin user, for changes made in the admin.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=("customer", "-created_at"), name="consent_customer")]

    def __str__(self) -> str:
        return f"{self.channel}/{self.topic_id or '*'} -> {self.status} ({self.source})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnly("the consent ledger is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnly("the consent ledger is append-only")


class AddressKind(models.TextChoices):
    EMAIL = "email", "Email address"
    PHONE = "phone", "Phone number"
    DEVICE_TOKEN = "device_token", "Device token"


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    COMPLAINT = "complaint", "Complaint"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribe"
    MANUAL = "manual", "Manual"
    LEGAL_HOLD = "legal_hold", "Legal hold"
    ERASED = "erased", "Erased customer"


class Suppression(models.Model):
    """An address that is never sent to, whoever it belongs to now.

    Keyed by a hash of the normalised address so it outlives the customer record: erasing a
    customer blanks ``address`` and keeps the hash."""

    kind = models.CharField(max_length=16, choices=AddressKind.choices)
    address_hash = models.CharField(max_length=64, editable=False)
    address = models.CharField(max_length=512, blank=True)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("kind", "address_hash"), name="suppression_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.address or self.address_hash[:12]}: {self.reason}"


class ConsentMode(models.TextChoices):
    OPT_IN = "opt_in", "Opt-in (marketing only after explicit consent)"
    OPT_OUT = "opt_out", "Opt-out (marketing until the customer opts out)"


class RegionPolicy(models.Model):
    """How "unknown" consent is read for customers of a region (``Customer.region``)."""

    region = models.CharField(
        max_length=64, unique=True, help_text="As stored on customers, e.g. DE, FR, US, EU."
    )
    mode = models.CharField(max_length=16, choices=ConsentMode.choices)
    requires_double_opt_in = models.BooleanField(
        default=False, help_text="An email opt-in counts only once the customer confirms it."
    )

    class Meta:
        verbose_name_plural = "region policies"
        ordering = ("region",)

    def __str__(self) -> str:
        return f"{self.region}: {self.mode}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.region = self.region.strip().upper()
        super().save(*args, **kwargs)


class QuietHours(models.Model):
    """A daily window, in each customer's local time, when a channel sends nothing: a
    message that falls inside is deferred to the window's end."""

    channel = models.CharField(max_length=16, choices=Channel.choices, unique=True)
    starts_at = models.TimeField(help_text="Local time the window opens, e.g. 21:00.")
    ends_at = models.TimeField(help_text="Local time it closes, e.g. 08:00 (next day).")
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"{self.channel}: {self.starts_at:%H:%M}-{self.ends_at:%H:%M}"


class Preference(models.Model):
    """A customer's own frequency choice, applied to marketing on every channel."""

    customer = models.OneToOneField(
        "customers.Customer", on_delete=models.CASCADE, related_name="message_preference"
    )
    max_marketing = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many marketing messages per period."
    )
    period_days = models.PositiveIntegerField(default=7)
    paused_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"preference of customer {self.customer_id}"

    @property
    def period(self) -> dt.timedelta:
        return dt.timedelta(days=self.period_days)
