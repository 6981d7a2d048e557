from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    CREATED = "created", "Created"
    CHANGED = "changed", "Changed"
    DELETED = "deleted", "Deleted"


class AuditEntry(models.Model):
    """One change to one audited row. Append-only: nobody edits or deletes the trail."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # As the actor was named then: a user can be renamed or deleted later.
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.CharField(max_length=64)
    object_label = models.CharField(max_length=200)
    #: {field: {"from": value, "to": value}}; a secret's values are never stored.
    changes = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("-at", "-id")
        indexes = [models.Index(fields=["content_type", "object_id", "-at"], name="audit_object")]
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_label}"
