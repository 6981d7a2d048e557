"""Retrying failed sends by hand (the admin's "retry" action).

Only failures a second try can fix go back to the queue: transient errors that ran out of
attempts, a provider's refusal (often a misconfigured account, fixed since), and sends whose
result was never recorded. A bad address or a template error would fail the same way again,
so they are never retried. A retried message goes back through the delivery policy first
(consent, suppression and caps may have changed since), exactly like a deferred message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from messaging import reasons
from messaging.models import Message, MessageStatus

#: Failure reasons a person may retry; every other failure stays failed.
RETRYABLE_REASONS: Final = frozenset({reasons.RETRIES_EXHAUSTED, reasons.PROVIDER_REJECTED})

RETRYABLE: Final = Q(status=MessageStatus.FAILED, reason__in=sorted(RETRYABLE_REASONS)) | Q(
    status=MessageStatus.UNCONFIRMED
)


def is_retryable(status: str, reason: str) -> bool:
    """``RETRYABLE`` for one message in hand."""
    return status == MessageStatus.UNCONFIRMED or (
        status == MessageStatus.FAILED and reason in RETRYABLE_REASONS
    )


def messages_retry(message_ids: Sequence[int]) -> int:
    """Hand the retryable messages among ``message_ids`` back to the delivery policy: each
    becomes deferred and due now, so the next ``messaging.due`` tick (woken after commit)
    weighs it again — consent, suppressions and caps as they are now — renders it and queues
    it, or records why not. Attempts start again from zero; the last error is kept for
    reference. Rows are locked while they change, so a retry never races a send task or the
    reconciler over the same row."""
    if not message_ids:
        return 0
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update()
            .filter(RETRYABLE, pk__in=list(message_ids))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not rows:
            return 0
        Message.objects.filter(pk__in=rows).update(
            status=MessageStatus.DEFERRED,
            reason="",
            attempts=0,
            send_after=now,
            failed_at=None,
            reserved_at=None,
            updated_at=now,
        )
        transaction.on_commit(_wake)
    return len(rows)


def _wake() -> None:
    from messaging.tasks import messages_due_task

    messages_due_task.delay()
