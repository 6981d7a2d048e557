"""Milestone definitions, their immutable versions, and what evaluation stores per subject.

A *subject* is a customer or an account (the version's ``unit``); progress, outcomes and
pending evaluations name it by ``subject_id`` so that one set-based statement serves both
units. Every write goes through ``milestones.services``; see DESIGN.md §2 for the invariants.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class MilestoneKind(models.TextChoices):
    ONBOARDING = "onboarding", "Onboarding"
    FEATURE_ADOPTION = "feature_adoption", "Feature adoption"
    HABIT = "habit", "Frequency / habit"
    VALUE = "value", "Value"
    RISK = "risk", "Risk"


class Unit(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    ACCOUNT = "account", "Account"


class DefinitionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    ARCHIVED = "archived", "Archived"


class Anchor(models.TextChoices):
    SIGNUP = "signup", "Signup (created_at)"
    EVENT = "event", "First occurrence of an event"
    MILESTONE = "milestone", "Another milestone's achievement"


class MilestoneDefinition(models.Model):
    """A milestone as a marketer edits it: the working copy plus its lifecycle.

    The condition, anchor, window and eligibility here are the *working copy*. Activating
    snapshots them into a new ``MilestoneVersion``; evaluation only ever reads versions.
    """

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=32, choices=MilestoneKind.choices)
    unit = models.CharField(max_length=16, choices=Unit.choices, default=Unit.CUSTOMER)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The larger milestone this one leads to (e.g. a north star).",
    )
    status = models.CharField(
        max_length=16, choices=DefinitionStatus.choices, default=DefinitionStatus.DRAFT
    )
    condition = models.JSONField(help_text="The condition tree (see the docs for its types).")
    anchor = models.CharField(max_length=16, choices=Anchor.choices, default=Anchor.SIGNUP)
    anchor_event = models.CharField(max_length=255, blank=True)
    anchor_milestone = models.SlugField(max_length=100, blank=True)
    window = models.DurationField(
        null=True, blank=True, help_text="Completion window from the anchor; empty: no deadline."
    )
    eligibility = models.JSONField(default=dict, blank=True)
    active_version = models.ForeignKey(
        "MilestoneVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    class Meta:
        ordering = ("key",)

    def __str__(self) -> str:
        return self.name or self.key


class MilestoneVersion(models.Model):
    """An immutable snapshot of a definition; progress and outcomes point here."""

    definition = models.ForeignKey(
        MilestoneDefinition, on_delete=models.PROTECT, related_name="versions"
    )
    number = models.PositiveIntegerField()
    unit = models.CharField(max_length=16, choices=Unit.choices)
    condition = models.JSONField()
    anchor = models.CharField(max_length=16, choices=Anchor.choices)
    anchor_event = models.CharField(max_length=255, blank=True)
    anchor_milestone = models.SlugField(max_length=100, blank=True)
    window = models.DurationField(null=True, blank=True)
    eligibility = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # Operational, not part of the snapshot: subjects with a larger id are started by the
    # ``progress_start`` tick (signup anchors), those up to it by the activation backfill.
    started_through_id = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ("definition_id", "-number")
        constraints = [
            models.UniqueConstraint(fields=("definition", "number"), name="version_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.definition.key} v{self.number}"


class ChangeAction(models.TextChoices):
    CREATED = "created", "Created"
    EDITED = "edited", "Edited draft"
    VERSIONED = "versioned", "New version"
    ACTIVATED = "activated", "Activated"
    ARCHIVED = "archived", "Archived"
    BACKFILL = "backfill", "Backfill requested"


class DefinitionChange(models.Model):
    """Change control: who did what to a definition, and when. Append-only."""

    definition = models.ForeignKey(
        MilestoneDefinition, on_delete=models.CASCADE, related_name="changes"
    )
    version = models.ForeignKey(
        MilestoneVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=16, choices=ChangeAction.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.get_action_display()} at {self.at:%Y-%m-%d %H:%M}"


class ProgressState(models.TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    ACHIEVED = "achieved", "Achieved"
    MISSED = "missed", "Missed"
    INELIGIBLE = "ineligible", "Ineligible"


class Progress(models.Model):
    """One subject's state on one version: the row the sweep and the evaluator share."""

    # No database-level FK constraints (as on Event): the deferred per-row checks cost as
    # much as the sweep's and backfill's writes, and versions are never deleted (PROTECT).
    # No single-column indexes either: the composite indexes below lead with these columns.
    version = models.ForeignKey(
        MilestoneVersion,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    definition = models.ForeignKey(
        MilestoneDefinition,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    unit = models.CharField(max_length=16, choices=Unit.choices)
    subject_id = models.BigIntegerField()
    state = models.CharField(
        max_length=16, choices=ProgressState.choices, default=ProgressState.IN_PROGRESS
    )
    anchor_at = models.DateTimeField()
    deadline_at = models.DateTimeField(null=True, blank=True)
    achieved_at = models.DateTimeField(null=True, blank=True)
    missed_at = models.DateTimeField(null=True, blank=True)
    is_late = models.BooleanField(default=False, help_text="Achieved after being missed.")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=1)
    label = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="Per-condition progress.")
    ineligible_reason = models.CharField(max_length=64, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "progress"
        constraints = [
            # Subject first: it also serves "this customer's progress" (with the unit as a
            # filter), so the sweep's and the evaluator's writes maintain one index less.
            models.UniqueConstraint(
                fields=("subject_id", "version"), name="progress_unique_subject"
            )
        ]
        indexes = [
            models.Index(fields=("definition", "state"), name="progress_definition_state"),
            # The missed sweep reads only open rows with a deadline, oldest first.
            models.Index(
                fields=("deadline_at",),
                name="progress_due",
                condition=models.Q(state="in_progress", deadline_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.unit} {self.subject_id} on version {self.version_id}: {self.state}"

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else round(100 * self.done / self.total)


class OutcomeKind(models.TextChoices):
    ACHIEVED = "achieved", "Achieved"
    MISSED = "missed", "Missed"


class MilestoneOutcome(models.Model):
    """A durable achieved or missed result: at most one of each kind per version and subject.

    A late achievement (after a missed outcome) is the subject's second outcome on the
    version: ``kind=achieved`` with ``is_late``.
    """

    # No single-column indexes either: the composite indexes below lead with these columns.
    version = models.ForeignKey(
        MilestoneVersion,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    definition = models.ForeignKey(
        MilestoneDefinition,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    unit = models.CharField(max_length=16, choices=Unit.choices)
    subject_id = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=OutcomeKind.choices)
    is_late = models.BooleanField(default=False)
    occurred_at = models.DateTimeField(help_text="When achieved, or the deadline that passed.")
    recorded_at = models.DateTimeField(default=timezone.now)
    # The id of the inserting transaction (PostgreSQL): the outcomes feed pages by it so that
    # a row committed late is never skipped by a cursor that has moved past its id.
    xact_id = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            # Subject first, as on progress: it also serves a subject's outcomes.
            models.UniqueConstraint(
                fields=("subject_id", "version", "kind"), name="outcome_unique_subject_kind"
            )
        ]
        indexes = [
            models.Index(fields=("xact_id", "id"), name="outcome_feed"),
            models.Index(fields=("definition", "kind", "occurred_at"), name="outcome_report"),
        ]

    def __str__(self) -> str:
        return f"{self.unit} {self.subject_id} {self.kind} version {self.version_id}"


class PendingEvaluation(models.Model):
    """A (version, subject) pair that new facts may have changed: the durable wake-up.

    Written in the same transaction as the events that caused it; the evaluator claims and
    deletes rows with ``SKIP LOCKED``; the reconciler re-enqueues the evaluator while old rows
    remain. Ingest adds no row for a pair that already waits unclaimed; a duplicate can still
    appear (a pair claimed while new events arrive) and the evaluator merges them.
    """

    version = models.ForeignKey(
        MilestoneVersion,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,  # pending_subject holds it
    )
    subject_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Subject first: the evaluator claims all of a subject's waiting pairs together, so
        # a subject's history is read once per claim, not once per milestone.
        indexes = [models.Index(fields=("subject_id", "version"), name="pending_subject")]

    def __str__(self) -> str:
        return f"subject {self.subject_id} on version {self.version_id}"


class BackfillStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Backfill(models.Model):
    """Evaluating every existing subject of a version from history; progress for the admin."""

    version = models.ForeignKey(
        MilestoneVersion, on_delete=models.CASCADE, related_name="backfills"
    )
    status = models.CharField(
        max_length=16, choices=BackfillStatus.choices, default=BackfillStatus.QUEUED
    )
    total = models.PositiveBigIntegerField(default=0, help_text="Subjects to evaluate.")
    processed = models.PositiveBigIntegerField(default=0)
    achieved = models.PositiveBigIntegerField(default=0)
    missed = models.PositiveBigIntegerField(default=0)
    method = models.CharField(max_length=16, blank=True, help_text="sql or python.")
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"backfill of version {self.version_id}: {self.status}"

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, round(100 * self.processed / self.total))


class LifecycleStage(models.Model):
    """A stage and the milestone states that put a customer in it; lowest priority wins.

    ``rules`` is a list of ``{"milestone": key, "state": achieved|missed|in_progress}``; all
    must hold. A customer no rule matches stays in (or returns to) ``settings``' default stage.
    """

    key = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    priority = models.PositiveIntegerField(default=100, help_text="Lower is checked first.")
    rules = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("priority", "key")

    def __str__(self) -> str:
        return self.name


class StageChange(models.Model):
    """History of a customer's lifecycle stage; journeys can react to these."""

    # No database-level FK constraint (as on progress): the deferred per-row check costs as
    # much as the sweep's insert; deleting a customer deletes its history through the ORM.
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="stage_changes",
        db_constraint=False,
        db_index=False,  # stage_change_customer leads with it
    )
    from_stage = models.CharField(max_length=32)
    to_stage = models.CharField(max_length=32)
    changed_at = models.DateTimeField(default=timezone.now)
    cause = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("-changed_at", "-id")
        indexes = [models.Index(fields=("customer", "-changed_at"), name="stage_change_customer")]

    def __str__(self) -> str:
        return f"{self.from_stage} -> {self.to_stage}"
