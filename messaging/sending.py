"""Sending: claim, send, record — at most once per idempotency key (DESIGN.md §2.2).

A send task claims its queued rows with one conditional UPDATE (queued -> sending), calls the
channel's backend outside any transaction, and records each result. A worker killed between
claim and record leaves rows in ``sending``; the reconciler resolves them: a provider that
deduplicates on our key is simply asked again, any other is marked ``unconfirmed`` for a
human rather than sent a second time blindly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.plans import planned_each_time
from consent.models import AddressKind, SuppressionReason
from consent.services import suppression_add
from messaging import reasons
from messaging.channels import ratelimit
from messaging.channels.base import Outgoing, PermanentError, Sent, TransientError
from messaging.channels.registry import backend_for
from messaging.models import Message, MessageStatus

logger = logging.getLogger(__name__)

_ADDRESS_KINDS = {"email": AddressKind.EMAIL, "sms": AddressKind.PHONE, "push": "device_token"}


@dataclasses.dataclass(frozen=True, slots=True)
class SendSummary:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def messages_send(
    channel: str, message_ids: Sequence[int], *, now: dt.datetime | None = None
) -> SendSummary:
    """Send the queued, due messages among ``message_ids`` on ``channel``."""
    claimed = messages_claim(channel, message_ids, now=now or timezone.now())
    if not claimed:
        return SendSummary()
    try:
        backend = backend_for(channel)
    except PermanentError as exc:  # no backend configured for the channel
        with transaction.atomic():
            for message in claimed:
                _record(message, exc)
        return SendSummary(len(claimed), 0, 0, len(claimed))
    # A provider that deduplicates can have a whole batch recorded at the end: a crash
    # before that only means asking it again. Any other is recorded message by message.
    per_message = not backend.supports_idempotency
    results: list[tuple[Claimed, Sent | Exception]] = []
    counts = {"sent": 0, "retrying": 0, "failed": 0}
    for position, message in enumerate(claimed):
        wait = _rate_wait(channel)
        if wait is not None:
            # Over the provider's rate: the rest of the batch goes back, due when a token is.
            _put_back(claimed[position:], wait)
            counts["retrying"] += len(claimed) - position
            break
        try:
            result: Sent | Exception = backend.send(outgoing(message))
        except (TransientError, PermanentError) as exc:
            result = exc
        except Exception as exc:  # a bug in a backend must not strand the batch in "sending"
            logger.exception("backend %s failed on message %s", channel, message.pk)
            result = TransientError(f"unexpected error: {exc.__class__.__name__}")
        if per_message:
            counts[_record(message, result)] += 1
        else:
            results.append((message, result))
    if results:
        with transaction.atomic():
            sent = [(m, r) for m, r in results if isinstance(r, Sent)]
            counts["sent"] += _record_sent(sent)
            for message, result in results:
                if not isinstance(result, Sent):
                    counts[_record(message, result)] += 1
    return SendSummary(len(claimed), counts["sent"], counts["retrying"], counts["failed"])


#: channel -> monotonic time until which this process leaves the channel's sends to its task
_SLOW: dict[str, float] = {}
_SLOW_SECONDS = 60.0


def messages_send_inline(channel: str, message_ids: Sequence[int]) -> list[int]:
    """Send a decision's messages in this process, right after the commit that queued them,
    sparing them a task hop (advance on entry: a milestone's first message should not queue
    behind other work). Sends in chunks — ``MESSAGING_SEND_INLINE_MAX`` first, doubling up
    to ``MESSAGING_SEND_BATCH`` — while the batch's ``MESSAGING_SEND_INLINE_SECONDS`` last,
    and returns the ids left for the channel's send task: all of them when inline sending
    is off, when the channel has a rate limit (its queue paces it), or when the channel's
    provider was slow here lately — a slow provider must hold up its own queue, not the
    worker that decided. Sending is the same claim → send → record as a task's, so at most
    once still holds."""
    chunk = settings.MESSAGING_SEND_INLINE_MAX
    if (
        chunk <= 0
        or settings.MESSAGING_RATE_LIMITS.get(channel)
        or time.monotonic() < _SLOW.get(channel, 0.0)
    ):
        return list(message_ids)
    rest = list(message_ids)
    deadline = time.monotonic() + settings.MESSAGING_SEND_INLINE_SECONDS
    while rest:
        here, rest = rest[:chunk], rest[chunk:]
        started = time.monotonic()
        summary = messages_send(channel, here)
        each = (time.monotonic() - started) / max(summary.claimed, 1)
        if each > settings.MESSAGING_SEND_INLINE_SLOW_SECONDS:
            logger.info("%s sends took %.0f ms each: sending through the queue for %.0f s",
                        channel, each * 1000, _SLOW_SECONDS)  # fmt: skip
            _SLOW[channel] = time.monotonic() + _SLOW_SECONDS
            break
        if summary.retrying or time.monotonic() >= deadline:
            break
        chunk = min(chunk * 2, settings.MESSAGING_SEND_BATCH)  # a fast provider: fewer trips
    return rest


def inline_forget() -> None:
    """Forget which channels were slow (tests)."""
    _SLOW.clear()


def messages_send_due(
    channel: str, *, now: dt.datetime | None = None, batch: int | None = None
) -> SendSummary:
    """Send up to ``batch`` queued, due messages of ``channel`` (least recently touched
    first), whatever task they were handed to: a send task that finds a backlog on its
    channel drains it instead of leaving each message to wait for its own task."""
    now = now or timezone.now()
    ids = list(
        Message.objects.filter(status=MessageStatus.QUEUED, channel=channel)
        .filter(Q(send_after__isnull=True) | Q(send_after__lte=now))
        # message_queued_channel's order: no sort of the whole backlog on every call.
        .order_by("updated_at")
        .values_list("pk", flat=True)[: batch or settings.MESSAGING_SEND_BATCH]
    )
    return messages_send(channel, ids, now=now) if ids else SendSummary()


@dataclasses.dataclass(frozen=True, slots=True)
class Claimed:
    """What sending needs of a claimed message (a model instance costs more to build)."""

    pk: int
    idempotency_key: str
    channel: str
    to_address: str
    platform: str
    rendered: dict[str, Any]
    attempts: int


_CLAIM_SQL = f"""
UPDATE {Message._meta.db_table} m
SET status = 'sending', claimed_at = %(now)s, attempts = m.attempts + 1, updated_at = %(now)s
WHERE m.id IN (
    SELECT id FROM {Message._meta.db_table}
    WHERE id = ANY(%(ids)s::bigint[]) AND channel = %(channel)s AND status = 'queued'
      AND (send_after IS NULL OR send_after <= %(now)s)
    ORDER BY id
    FOR UPDATE SKIP LOCKED
)
RETURNING m.id, m.idempotency_key, m.channel, m.to_address, m.platform, m.rendered, m.attempts
"""  # noqa: S608 - the model's table; every value is a parameter


def messages_claim(channel: str, message_ids: Sequence[int], *, now: dt.datetime) -> list[Claimed]:
    """Move the due queued rows among ``message_ids`` to ``sending``; only rows this call
    moved are returned, so two workers handed the same ids never both send one."""
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, {"now": now, "ids": list(message_ids), "channel": channel})
            rows = cursor.fetchall()
        return sorted(
            (Claimed(pk, key, ch, to, platform, _json(rendered), attempts)
             for pk, key, ch, to, platform, rendered, attempts in rows),
            key=lambda c: c.pk,
        )  # fmt: skip
    due = Q(send_after__isnull=True) | Q(send_after__lte=now)
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(due, pk__in=list(message_ids), channel=channel, status=MessageStatus.QUEUED)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not ids:
            return []
        Message.objects.filter(pk__in=ids).update(
            status=MessageStatus.SENDING,
            claimed_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    fields = ("pk", "idempotency_key", "channel", "to_address", "platform", "rendered", "attempts")
    return [
        Claimed(*values)
        for values in Message.objects.filter(pk__in=ids).order_by("pk").values_list(*fields)
    ]


def _json(value: Any) -> dict[str, Any]:
    found = orjson.loads(value) if isinstance(value, str | bytes) else value
    return found if isinstance(found, dict) else {}


def outgoing(message: Claimed) -> Outgoing:
    content = {k: v for k, v in message.rendered.items() if k != "headers"}
    return Outgoing(
        message_id=message.pk,
        idempotency_key=message.idempotency_key,
        channel=message.channel,
        to=message.to_address,
        content=content,
        headers=dict(message.rendered.get("headers") or {}),
        platform=message.platform,
    )


def _record_sent(results: Sequence[tuple[Claimed, Sent]]) -> int:
    """Record a batch of successful sends in one statement."""
    if not results:
        return 0
    now = timezone.now()
    if connection.vendor != "postgresql":
        for message, result in results:
            _record(message, result)
        return len(results)
    with planned_each_time(), connection.cursor() as cursor:  # a join to arrays
        cursor.execute(
            f"UPDATE {Message._meta.db_table} m SET status = 'sent', provider_id = t.provider_id, "  # noqa: S608 - model names
            "sent_at = %s, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::text[]) AS t(id, provider_id) "
            "WHERE m.id = t.id AND m.status = 'sending'",
            [now, now, [m.pk for m, _ in results], [r.provider_id for _, r in results]],
        )
        return int(cursor.rowcount)


def _record(message: Claimed, result: Sent | Exception) -> str:
    now = timezone.now()
    sending = Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING)
    if isinstance(result, Sent):
        sending.update(
            status=MessageStatus.SENT, provider_id=result.provider_id, sent_at=now, updated_at=now
        )
        return "sent"
    if isinstance(result, TransientError) and message.attempts < settings.MESSAGING_MAX_ATTEMPTS:
        retry_at = now + dt.timedelta(seconds=retry_delay(message.attempts, result.retry_after))
        sending.update(
            status=MessageStatus.QUEUED,
            send_after=retry_at,
            error=result.reason,
            updated_at=now,
        )
        return "retrying"
    reason = reasons.RETRIES_EXHAUSTED
    if isinstance(result, PermanentError):
        reason = reasons.BAD_ADDRESS if result.is_bad_address else reasons.PROVIDER_REJECTED
        if result.is_bad_address and message.channel in _ADDRESS_KINDS:
            suppression_add(
                kind=_ADDRESS_KINDS[message.channel],
                address=message.to_address,
                reason=SuppressionReason.HARD_BOUNCE,
                note=f"message {message.pk}: {result.reason}",
            )
    sending.update(
        status=MessageStatus.FAILED,
        reason=reason,
        error=str(getattr(result, "reason", result))[:500],
        reserved_at=None,  # a message that never went out holds no cap slot
        failed_at=now,
        updated_at=now,
    )
    return "failed"


def _rate_wait(channel: str) -> float | None:
    """None when a send may go now (waiting up to a second for a token, which keeps a
    worker busy at the provider's rate); else the seconds until it may."""
    wait = ratelimit.acquire_for(channel)
    if 0 < wait <= 1.0:
        time.sleep(wait)
        wait = ratelimit.acquire_for(channel)
    return None if wait <= 0 else wait


def _put_back(messages: Sequence[Claimed], wait: float) -> None:
    """Return claimed, unsent messages to the queue without spending an attempt."""
    now = timezone.now()
    Message.objects.filter(pk__in=[m.pk for m in messages], status=MessageStatus.SENDING).update(
        status=MessageStatus.QUEUED,
        attempts=F("attempts") - 1,
        send_after=now + dt.timedelta(seconds=wait),
        updated_at=now,
    )


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, at least what the provider asked for."""
    base = settings.MESSAGING_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1))
    delay = random.uniform(0, min(settings.MESSAGING_RETRY_MAX_SECONDS, base))  # noqa: S311
    return max(delay, retry_after or 0.0)
