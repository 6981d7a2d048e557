"""Backfill: evaluate every existing subject of a version from history.

Subjects are walked in id order in batches (keyset pagination), each batch evaluated by the
same code as live evaluation in one transaction, so a backfill and live traffic can run at
once and a crashed backfill can simply be run again (outcomes are unique).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from customers.models import Account, Customer, Event
from milestones.evaluation import pairs_evaluate, pending_add
from milestones.models import Backfill, BackfillStatus, MilestoneVersion, Unit
from milestones.registry import compile_version

logger = logging.getLogger(__name__)

BATCH = 1_000
Progressed = Callable[[Backfill], None]


def backfill_run(*, backfill_id: int, on_progress: Progressed | None = None) -> Backfill:
    """Run one queued backfill to the end. Idempotent: a finished backfill is left alone."""
    with transaction.atomic():
        backfill = Backfill.objects.select_for_update().get(pk=backfill_id)
        if backfill.status == BackfillStatus.DONE:
            return backfill
        version = MilestoneVersion.objects.select_related("definition").get(pk=backfill.version_id)
        model = Account if version.unit == Unit.ACCOUNT else Customer
        last_id = model.objects.aggregate(last=Max("pk"))["last"] or 0
        backfill.status, backfill.started_at = BackfillStatus.RUNNING, timezone.now()
        backfill.total = model.objects.count()
        backfill.processed = backfill.achieved = backfill.missed = 0
        backfill.method, backfill.error = "python", ""
        backfill.save()
        MilestoneVersion.objects.filter(pk=version.pk, started_through_id__lt=last_id).update(
            started_through_id=last_id
        )
    try:
        _walk(backfill, version, model, last_id, on_progress)
        _catch_up(version)
    except Exception as exc:
        Backfill.objects.filter(pk=backfill.pk).update(
            status=BackfillStatus.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        logger.exception("backfill %s failed", backfill.pk)
        raise
    backfill.status, backfill.finished_at = BackfillStatus.DONE, timezone.now()
    backfill.save(update_fields=["status", "finished_at"])
    return backfill


def _walk(
    backfill: Backfill,
    version: MilestoneVersion,
    model: type[Customer] | type[Account],
    last_id: int,
    on_progress: Progressed | None,
) -> None:
    after = 0
    while True:
        ids = list(
            model.objects.filter(pk__gt=after, pk__lte=last_id)
            .order_by("pk")
            .values_list("pk", flat=True)[:BATCH]
        )
        if not ids:
            return
        with transaction.atomic():
            summary = pairs_evaluate([(version.pk, pk) for pk in ids])
        after = ids[-1]
        backfill.processed += len(ids)
        backfill.achieved += summary.achieved
        backfill.missed += summary.missed
        backfill.save(update_fields=["processed", "achieved", "missed"])
        if on_progress is not None:
            on_progress(backfill)


def _catch_up(version: MilestoneVersion) -> None:
    """Queue subjects with matching events received since activation: web processes learn of
    a new version within MILESTONES_REGISTRY_SECONDS, and events in that gap got no pending
    row of their own."""
    compiled = compile_version(version, version.definition.key)
    since = (version.activated_at or timezone.now()) - dt.timedelta(
        seconds=settings.MILESTONES_REGISTRY_SECONDS + 5
    )
    column = "account_id" if version.unit == Unit.ACCOUNT else "customer_id"
    subjects = (
        Event.objects.filter(received_at__gte=since, name__in=sorted(compiled.event_names))
        .exclude(**{f"{column}__isnull": True})
        .values_list(column, flat=True)
        .distinct()
    )
    pending_add({(version.pk, int(s)) for s in subjects.iterator(chunk_size=5000)})
