"""``manage.py milestone_backfill KEY [--sync]``: evaluate every existing subject from history.

Without ``--sync`` the backfill is queued for a worker (as the admin does); with it, it runs
in this process and draws a progress bar on stderr.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from milestones.backfill import backfill_run
from milestones.models import Backfill, DefinitionStatus, MilestoneDefinition
from milestones.services import DefinitionInvalid, backfill_request

_WIDTH = 30


class Command(BaseCommand):
    help = "Backfill an active milestone: queue it for a worker, or run it here with --sync."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="The milestone's key.")
        parser.add_argument(
            "--sync", action="store_true", help="Run in this process with a progress bar."
        )

    def handle(self, *args: Any, key: str, sync: bool, **options: Any) -> None:
        definition = MilestoneDefinition.objects.filter(key=key).first()
        if definition is None:
            raise CommandError(f"No milestone has the key “{key}”.")
        if definition.status != DefinitionStatus.ACTIVE or definition.active_version_id is None:
            raise CommandError(
                f"The milestone “{key}” is {definition.status}: only an active milestone can be "
                "backfilled."
            )
        if not sync:
            try:
                backfill = backfill_request(definition=definition)
            except DefinitionInvalid as exc:
                raise CommandError("; ".join(exc.errors.values())) from exc
            self.stdout.write(f"Queued backfill {backfill.pk} of “{key}”.")
            return
        backfill = backfill_request(definition=definition, enqueue=False)
        bar = ProgressBar(self.stderr)
        try:
            finished = backfill_run(backfill_id=backfill.pk, on_progress=bar.draw)
        except Exception as exc:
            bar.close(None)
            raise CommandError(f"Backfill {backfill.pk} failed: {exc}") from exc
        bar.close(finished)
        self.stdout.write(
            f"Backfilled “{key}” ({finished.method}): {finished.processed:,} subjects, "
            f"{finished.achieved:,} achieved, {finished.missed:,} missed."
        )


class ProgressBar:
    """A plain-text bar: redrawn in place on a terminal, one line per 10% otherwise."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out
        self.is_terminal = out.isatty()
        self.started = time.monotonic()
        self.shown = -1

    def draw(self, backfill: Backfill) -> None:
        percent = backfill.percent
        if not self.is_terminal and percent // 10 == self.shown // 10:
            return
        self.shown = percent
        filled = _WIDTH * percent // 100
        line = (
            f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {percent:3d}% "
            f"{backfill.processed:,}/{backfill.total:,} subjects, "
            f"{backfill.achieved:,} achieved, {backfill.missed:,} missed, "
            f"{time.monotonic() - self.started:.1f} s"
        )
        self.out.write(f"\r{line}" if self.is_terminal else line, ending="")
        if not self.is_terminal:
            self.out.write("")
        self.out.flush()

    def close(self, backfill: Backfill | None) -> None:
        if backfill is not None and self.shown < 100 <= backfill.percent:
            self.draw(backfill)
        if self.is_terminal and self.shown >= 0:
            self.out.write("")
        self.out.flush()
