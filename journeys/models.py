"""Journeys: versioned multi-step sequences that milestone outcomes, events and stage changes
enroll customers in (DESIGN.md §3). The working copy on ``Journey`` is edited freely; going
live snapshots it as an immutable ``JourneyVersion`` that enrollments point at."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    LIVE = "live", "Live"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class Reentry(models.TextChoices):
    NEVER = "never", "Never: a customer enters once"
    AFTER_DAYS = "after_days", "Again after N days"


class _Definition(models.Model):
    """What a journey is; shared by the working copy and its versions."""

    trigger = models.JSONField(
        help_text='What enrolls a customer, e.g. {"kind": "milestone_missed", "milestone": '
        '"activated"}; kinds: milestone_achieved, milestone_missed, event, stage_changed.'
    )
    entry_rules = models.JSONField(
        default=dict,
        blank=True,
        help_text='Who may enter, e.g. {"plans": ["pro"], "regions": ["US"], "stages": '
        '["onboarding"]}.',
    )
    reentry = models.CharField(max_length=16, choices=Reentry.choices, default=Reentry.NEVER)
    reentry_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="With re-entry after N days: N."
    )
    priority = models.IntegerField(
        default=0, help_text="Higher wins when its messages compete for a customer's last slot."
    )
    holdout_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=0,
        help_text="Share of entering customers held out as a control group: they get nothing.",
    )
    steps = models.JSONField(help_text="The step graph; the first step is the entry.")
    goal = models.JSONField(
        null=True,
        blank=True,
        help_text='Conversion goal, e.g. {"milestone": "activated", "within": {"days": 14}}.',
    )
    exit_when = models.JSONField(
        default=list,
        blank=True,
        help_text='Leave at once when any holds, e.g. [{"milestone": "activated", "state": '
        '"achieved"}] or [{"event": "Unsubscribed"}].',
    )

    class Meta:
        abstract = True


class Journey(_Definition):
    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=JourneyStatus.choices, default=JourneyStatus.DRAFT
    )
    active_version = models.ForeignKey(
        "JourneyVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class JourneyVersion(_Definition):
    journey = models.ForeignKey(Journey, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("journey", "-number")
        constraints = [
            models.UniqueConstraint(fields=("journey", "number"), name="journey_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.journey.key} v{self.number}"


class JourneyChange(models.Model):
    """Who changed a journey, when, and what (change control)."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="changes")
    action = models.CharField(max_length=32)
    changes = models.JSONField(default=dict, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.journey_id} {self.action}"


class EnrollmentState(models.TextChoices):
    ACTIVE = "active", "Active"
    WAITING = "waiting", "Waiting"
    COMPLETED = "completed", "Completed"
    EXITED = "exited", "Exited"
    HOLDOUT = "holdout", "Held out (control)"
    FAILED = "failed", "Failed"


class Enrollment(models.Model):
    """One customer's pass through one journey version. ``entry_key`` names what enrolled
    them (an outcome, an event, a stage change), so delivering it twice enrolls once."""

    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="+")
    journey = models.ForeignKey(
        Journey, on_delete=models.PROTECT, related_name="enrollments", db_index=False
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="enrollments", db_index=False
    )
    entry_key = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=EnrollmentState.choices)
    current_step = models.CharField(max_length=64, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    step_started_at = models.DateTimeField(null=True, blank=True)
    variants = models.JSONField(default=dict, blank=True, help_text="Split step -> variant.")
    entered_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=200, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("version", "customer", "entry_key"), name="enrollment_unique_entry"
            )
        ]
        indexes = [
            # The runner claims due enrollments oldest first.
            models.Index(
                fields=("next_run_at",),
                name="enrollment_due",
                condition=models.Q(state__in=("active", "waiting")),
            ),
            # Re-entry, exit and goal checks: a customer's enrollments in a journey.
            models.Index(fields=("customer", "journey", "-entered_at"), name="enrollment_customer"),
        ]

    def __str__(self) -> str:
        return f"customer {self.customer_id} in {self.journey_id}: {self.state}"


class StepRunStatus(models.TextChoices):
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class StepRun(models.Model):
    """The step log: one row per (enrollment, step, attempt), whose key the send step hands
    to the messaging outbox as its idempotency key."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="runs")
    step_key = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField(default=1)
    idempotency_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=16, choices=StepRunStatus.choices)
    result = models.JSONField(default=dict, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("enrollment", "at", "id")

    def __str__(self) -> str:
        return f"{self.enrollment_id}/{self.step_key}#{self.attempt}: {self.status}"


# --- Outgoing notices: team emails and signed webhooks ------------------------------------


class Team(models.Model):
    """Where a notify step's ``sales`` or ``support`` goes: a team address, a webhook, or
    both. (``account_owner`` goes to the account's ``owner_email`` trait.)"""

    key = models.SlugField(max_length=32, unique=True, help_text="sales or support.")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, help_text="The team's shared address.")
    webhook_url = models.URLField(
        max_length=500, blank=True, help_text="Also POST a signed JSON notice here (optional)."
    )

    class Meta:
        ordering = ("key",)

    def __str__(self) -> str:
        return self.name


class WebhookEvent(models.TextChoices):
    MILESTONE_ACHIEVED = "milestone.achieved", "milestone.achieved"
    MILESTONE_MISSED = "milestone.missed", "milestone.missed"
    JOURNEY_ENTERED = "journey.entered", "journey.entered"
    JOURNEY_CONVERTED = "journey.converted", "journey.converted"


class WebhookEndpoint(models.Model):
    """A receiver of outcome and journey events. Its signing secret is derived from the
    deployment's key and ``secret_version`` (nothing secret is stored); rotating bumps the
    version."""

    name = models.CharField(max_length=200)
    url = models.URLField(max_length=500, help_text="An https URL that accepts JSON POSTs.")
    events = models.JSONField(
        default=list,
        blank=True,
        help_text='Event types to send, e.g. ["milestone.achieved"]; empty sends them all.',
    )
    is_active = models.BooleanField(default=True)
    secret_version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class NoticeKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class NoticeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Notice(models.Model):
    """The outbox of outgoing notices: one team email or one signed webhook POST, written in
    the transaction that decided it and retried with backoff until delivered or out of
    attempts. ``key`` makes writing it idempotent (an outcome delivered twice, a step run
    twice, notifies once)."""

    key = models.CharField(max_length=300, unique=True)
    kind = models.CharField(max_length=16, choices=NoticeKind.choices)
    event = models.CharField(max_length=64, help_text="journey.notify or a webhook event type.")
    endpoint = models.ForeignKey(
        WebhookEndpoint, null=True, blank=True, on_delete=models.CASCADE, related_name="notices"
    )
    enrollment = models.ForeignKey(
        Enrollment, null=True, blank=True, on_delete=models.SET_NULL, related_name="notices"
    )
    to = models.CharField(max_length=500, help_text="An email address or a URL.")
    template = models.CharField(max_length=100, blank=True)
    payload = models.JSONField(help_text="The webhook body, or the email template's context.")
    status = models.CharField(
        max_length=16, choices=NoticeStatus.choices, default=NoticeStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(
                fields=("next_attempt_at",),
                name="notice_due",
                condition=models.Q(status__in=("pending", "sending")),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.to}: {self.status}"


class SweepCursor(models.Model):
    """How far a sweep has read a feed (``(xact_id, id)`` of the last row handled)."""

    name = models.CharField(max_length=64, unique=True)
    xact_id = models.BigIntegerField(null=True, blank=True)
    last_id = models.BigIntegerField(default=0)
    # A feed without commit order (events): the highest id when ``marked_at`` was recorded;
    # rows up to it are read once the grace has passed since.
    mark_id = models.BigIntegerField(null=True, blank=True)
    marked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} at {self.xact_id}/{self.last_id}"
