"""The beat heartbeat: proof that one ``celery beat`` is alive and its schedule is running.

django-celery-beat's ``PeriodicTask.last_run_at`` cannot serve: the DatabaseScheduler keeps
it in memory and writes it back only when it syncs (every 3 minutes by default), so it can be
minutes old while beat is well, and it only says beat sent a task, not that the broker and a
worker carried it. Instead beat sends ``maintenance.beat_heartbeat`` every 15 s and the task
records here when it ran, one row per sending process (Celery stamps each message with its
sender's node name, ``gen<pid>@host``), so two beats running at once show as two rows that
keep beating. A fresh heartbeat proves beat, the broker and a maintenance worker all work.

``Console`` has no table: it holds the ops console's permission (``ops.view_ops_console``).
"""

from __future__ import annotations

from django.db import models


class BeatHeartbeat(models.Model):
    origin = models.CharField(max_length=255, unique=True, help_text="The beat process.")
    first_at = models.DateTimeField(help_text="Its first heartbeat.")
    last_at = models.DateTimeField(help_text="Its latest heartbeat.")

    class Meta:
        ordering = ("-last_at",)

    def __str__(self) -> str:
        return f"{self.origin} at {self.last_at:%Y-%m-%d %H:%M:%S}"


class Console(models.Model):
    """No table: the ops console's place in the admin (``ops/admin.py``) and the holder of
    its permission, so that a role can be given the console without the models it reads."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = (("view_ops_console", "Can view the ops console"),)
        verbose_name = "ops console"
        verbose_name_plural = "ops console"

    def __str__(self) -> str:
        return "ops console"
