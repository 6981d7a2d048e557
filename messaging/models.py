"""Messaging: templates with immutable versions, frequency caps, and ``Message`` — the outbox
and send log, one row per intended send whether or not the policy let it go (DESIGN.md §2.6)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from consent.models import Channel, Topic


class TemplateStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    ARCHIVED = "archived", "Archived"


class Template(models.Model):
    """A message for one channel. The working copy (``default_locale``, ``variants``) is
    edited freely; activating snapshots it as an immutable ``TemplateVersion``."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    topic = models.ForeignKey(Topic, on_delete=models.PROTECT, related_name="templates")
    default_locale = models.CharField(max_length=35, default="en")
    variants = models.JSONField(
        default=dict,
        blank=True,
        help_text='Fields per locale, e.g. {"en": {"subject": "...", "html": "..."}}.',
    )
    status = models.CharField(
        max_length=16, choices=TemplateStatus.choices, default=TemplateStatus.DRAFT
    )
    active_version = models.ForeignKey(
        "TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"


class TemplateVersion(models.Model):
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    channel = models.CharField(max_length=16, choices=Channel.choices)
    default_locale = models.CharField(max_length=35)
    variants = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("template", "-number")
        constraints = [
            models.UniqueConstraint(fields=("template", "number"), name="template_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.template.key} v{self.number}"


class CapScope(models.TextChoices):
    MARKETING = "marketing", "All marketing"
    CHANNEL = "channel", "One channel"
    JOURNEY = "journey", "One journey"
    TOPIC = "topic", "One topic"


class FrequencyCap(models.Model):
    """At most ``limit`` marketing messages per customer in a rolling ``window`` within the
    scope. Transactional messages are exempt."""

    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=16, choices=CapScope.choices)
    channel = models.CharField(
        max_length=16, choices=Channel.choices, blank=True, help_text="For a channel cap."
    )
    topic = models.ForeignKey(
        Topic,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="For a topic cap.",
    )
    journey_key = models.CharField(max_length=100, blank=True, help_text="For a journey cap.")
    limit = models.PositiveIntegerField()
    window = models.DurationField(help_text="Rolling window, e.g. 7 days.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("scope", "name")

    def __str__(self) -> str:
        return self.name


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DEFERRED = "deferred", "Deferred"
    SUPPRESSED = "suppressed", "Suppressed"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    FAILED = "failed", "Failed"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    COMPLAINED = "complained", "Complained"
    UNCONFIRMED = "unconfirmed", "Send unconfirmed"


class Message(models.Model):
    """One intended send. Created by the delivery policy with its decision (queued, deferred
    or suppressed, with a reason); sent at most once per ``idempotency_key``: the send task
    claims the row (queued -> sending), calls the backend, records the result."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    customer = models.ForeignKey(
        "customers.Customer",
        null=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        db_index=False,  # message_customer leads with it
    )
    channels = models.JSONField(help_text="The channels asked for, in priority order.")
    channel = models.CharField(
        max_length=16, choices=Channel.choices, blank=True, help_text="The channel chosen."
    )
    topic = models.ForeignKey(Topic, on_delete=models.PROTECT, related_name="+")
    is_transactional = models.BooleanField(default=False)
    templates = models.JSONField(
        default=dict, help_text="Template version id per channel asked for."
    )
    template_version = models.ForeignKey(
        TemplateVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The version rendered for the chosen channel.",
    )
    journey_key = models.CharField(max_length=100, blank=True)
    priority = models.IntegerField(default=0, help_text="Higher wins the last cap slot.")
    status = models.CharField(max_length=16, choices=MessageStatus.choices)
    reason = models.CharField(max_length=40, blank=True, help_text="Why it was not sent.")
    explanation = models.JSONField(
        default=list, blank=True, help_text="Each channel tried and what the policy said."
    )
    to_address = models.CharField(max_length=512, blank=True)
    platform = models.CharField(max_length=16, blank=True)
    locale = models.CharField(max_length=35, blank=True)
    context = models.JSONField(default=dict, blank=True, help_text="Extra render context.")
    rendered = models.JSONField(default=dict, blank=True)
    links = models.JSONField(default=list, blank=True, help_text="Tracked URLs, in order.")
    provider_id = models.CharField(max_length=255, blank=True)
    error = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Set while the message holds a frequency-cap slot (marketing, queued or sent).
    reserved_at = models.DateTimeField(null=True, blank=True)
    send_after = models.DateTimeField(null=True, blank=True, help_text="Deferred until.")
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True, help_text="In-app: read.")
    dismissed_at = models.DateTimeField(null=True, blank=True, help_text="In-app: dismissed.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(fields=("customer", "-created_at"), name="message_customer"),
            # The cap check: a customer's slot-holding messages in the window.
            models.Index(
                fields=("customer", "reserved_at"),
                name="message_reserved",
                condition=models.Q(reserved_at__isnull=False),
            ),
            models.Index(
                fields=("send_after",),
                name="message_deferred_due",
                condition=models.Q(status="deferred"),
            ),
            # The reconciler: queued rows whose wake-up was lost, sends that never recorded.
            models.Index(
                fields=("status", "updated_at"),
                name="message_in_flight",
                condition=models.Q(status__in=("queued", "sending")),
            ),
            # A send task draining its channel's due backlog: another channel's backlog
            # (a rate-limited SMS provider's, say) is not in its way.
            models.Index(
                fields=("channel", "updated_at"),
                name="message_queued_channel",
                condition=models.Q(status="queued"),
            ),
            # Provider webhooks find their message by the provider's id.
            models.Index(
                fields=("provider_id",),
                name="message_provider_id",
                condition=~models.Q(provider_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel or '-'} message {self.pk}: {self.status}"
