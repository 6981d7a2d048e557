"""Asking for messages: the delivery policy applied, atomically, to a batch of requests.

``messages_request`` is the one door every send goes through (journeys, tests, the admin's
"send test"). In one transaction it locks the batch's customers (in id order), skips keys
already decided, reads one snapshot, lets the pure policy decide, renders what may go, and
inserts one ``Message`` row per request — queued, deferred or suppressed with its reason.
A queued marketing message holds its frequency-cap slot from that commit on
(``reserved_at``), so concurrent workers can never exceed a cap: each sees the slots of
every transaction that locked the same customer before it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Max
from django.utils import timezone

from config.recordset import recordset
from consent import links
from consent.models import Channel, Topic
from customers.locks import customers_advisory_lock
from customers.models import Customer
from messaging import policy, reasons, sending
from messaging.models import Message, MessageStatus, Template, TemplateVersion
from messaging.rendering import (
    RenderError,
    links_track,
    links_track_with_text,
    open_pixel_add,
    render,
    variant_for,
)
from messaging.snapshot import Snapshot, snapshot_read
from messaging.templating import templates_by_key
from messaging.tracking import click_url, open_url

logger = logging.getLogger(__name__)


class MessagingError(ValueError):
    """A request that cannot be decided at all (unknown template or topic)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SendRequest:
    key: str  # idempotency key: one message per key, however often it is asked for
    customer_id: int
    templates: tuple[str, ...]  # template keys, one per channel, in channel priority order
    priority: int = 0
    journey: str = ""
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class _Resolved:
    request: SendRequest
    versions: dict[str, TemplateVersion]  # channel -> active version, in priority order
    topic: Topic


def messages_request(
    requests: Sequence[SendRequest],
    *,
    now: dt.datetime | None = None,
    send_here: bool = False,
    customers: Mapping[int, Customer] | None = None,
) -> list[int]:
    """Decide and store one message per request; returns the message id of each request
    (an existing one for a key already decided). Queued messages are handed to their
    channel's send task after commit — or, with ``send_here`` (a worker deciding a few
    latency-sensitive messages), sent right here after commit as far as
    ``sending.messages_send_inline`` allows, the rest handed to the task. ``customers``:
    the requests' customers, if the caller has just read them in its transaction."""
    if not requests:
        return []
    now = now or timezone.now()
    resolved = _resolve(requests)
    # No savepoint inside a caller's transaction (the runner's): an error here ends it anyway.
    with transaction.atomic(savepoint=False):
        customers_lock(sorted({r.customer_id for r in requests}))
        existing = dict(
            Message.objects.filter(idempotency_key__any=[r.key for r in requests]).values_list(
                "idempotency_key", "pk"
            )
        )
        fresh = _unique([r for r in resolved if r.request.key not in existing])
        rows = _decide(fresh, now, customers) if fresh else []
        messages_insert(rows)
        queued = [m for m in rows if m.status == MessageStatus.QUEUED]
        if queued:
            pairs = [(m.channel, m.pk) for m in queued]
            transaction.on_commit(partial(_send_here if send_here else _dispatch, pairs))
    ids = {**existing, **{m.idempotency_key: m.pk for m in rows}}
    return [ids[r.key] for r in requests]


def _unique(resolved: list[_Resolved]) -> list[_Resolved]:
    seen: dict[str, _Resolved] = {}
    for item in resolved:
        seen.setdefault(item.request.key, item)
    return list(seen.values())


def customers_lock(customer_ids: Sequence[int]) -> None:
    """Serialise policy decisions per customer for the rest of the transaction."""
    customers_advisory_lock(_LOCK_SPACE, customer_ids)


_LOCK_SPACE = 0x4D50  # "MP": the advisory-lock namespace of message decisions


def _resolve(requests: Sequence[SendRequest]) -> list[_Resolved]:
    keys = {key for r in requests for key in r.templates}
    known = templates_by_key.get()
    templates = {key: known[key] for key in keys if key in known}
    if len(templates) < len(keys):  # made in another process since the cache was loaded
        missing = Template.objects.filter(key__in=keys - templates.keys())
        templates.update((t.key, t) for t in missing.select_related("active_version", "topic"))
    resolved = []
    for index, request in enumerate(requests):
        if not request.templates:
            raise MessagingError(f"request {index} ({request.key}): names no template")
        versions: dict[str, TemplateVersion] = {}
        for key in request.templates:
            template = templates.get(key)
            if template is None or template.active_version is None:
                raise MessagingError(
                    f"request {index} ({request.key}): template {key!r} "
                    + ("does not exist" if template is None else "has no active version")
                )
            versions.setdefault(template.channel, template.active_version)
        topic = templates[request.templates[0]].topic
        resolved.append(_Resolved(request, versions, topic))
    return resolved


def _decide(
    resolved: list[_Resolved], now: dt.datetime, customers: Mapping[int, Customer] | None = None
) -> list[Message]:
    snapshot = snapshot_read([r.request.customer_id for r in resolved], now, loaded=customers)
    asks = [
        policy.Request(
            key=r.request.key,
            customer_id=r.request.customer_id,
            channels=tuple(r.versions),
            topic=r.topic.key,
            is_transactional=r.topic.is_transactional,
            priority=r.request.priority,
            journey=r.request.journey,
        )
        for r in resolved
    ]
    decisions = policy.decide(asks, snapshot.audiences, snapshot.rules, now)
    ids = _ids_allocate(len(resolved))
    return [
        _message(pk, item, decision, snapshot, now)
        for pk, item, decision in zip(ids, resolved, decisions, strict=True)
    ]


@functools.cache
def _insert_sql() -> tuple[list[str], str]:
    """The message columns (also the attribute names) and the insert statement."""
    columns, typed = recordset(Message)
    listed = ", ".join(columns)
    return columns, (
        f"INSERT INTO {Message._meta.db_table} ({listed}) "  # noqa: S608 - model names
        f"SELECT {listed} FROM jsonb_to_recordset(%s::jsonb) AS t({typed})"
    )


def messages_insert(rows: Sequence[Message]) -> None:
    """Insert decided messages in one statement (PostgreSQL: the batch travels as one JSON
    document, where ``bulk_create`` spent more time preparing values than the database
    spent inserting them)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        Message.objects.bulk_create(rows)
        return
    names, sql = _insert_sql()
    document = orjson.dumps([{name: getattr(row, name) for name in names} for row in rows])
    with connection.cursor() as cursor:
        cursor.execute(sql, [document.decode()])


def _ids_allocate(count: int) -> list[int]:
    """Message ids before insert, so tracked links can carry them."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [Message._meta.db_table, count],
            )
            return [row[0] for row in cursor.fetchall()]
    # SQLite holds the database's write lock for the rest of this transaction.
    top = Message.objects.aggregate(top=Max("pk"))["top"] or 0
    return list(range(top + 1, top + count + 1))


def _message(
    pk: int,
    item: _Resolved,
    decision: policy.Decision,
    snapshot: Snapshot,
    now: dt.datetime,
) -> Message:
    request = item.request
    message = _message_new(
        {
            "id": pk,
            "idempotency_key": request.key,
            "customer_id": (
                request.customer_id if request.customer_id in snapshot.customers else None
            ),
            "channels": list(item.versions),
            "templates": {channel: v.pk for channel, v in item.versions.items()},
            "topic_id": item.topic.pk,
            "is_transactional": item.topic.is_transactional,
            "journey_key": request.journey,
            "priority": request.priority,
            "context": dict(request.context),
            "created_at": now,
            "updated_at": now,
        }
    )
    _TOPIC_FIELD.set_cached_value(message, item.topic)
    decision_apply(message, decision, snapshot, now)
    return message


_TOPIC_FIELD = Message._meta.get_field("topic")


@functools.cache
def _message_defaults() -> list[tuple[str, Any, bool]]:
    """(attname, default, is a factory) per concrete field, in the model's order."""
    found = []
    for field in Message._meta.concrete_fields:
        factory = field.has_default() and callable(field.default)
        found.append((field.attname, field.default if factory else field.get_default(), factory))
    return found


def _message_new(values: Mapping[str, Any]) -> Message:
    """``Message(**values)`` through Django's positional fast path (the one the ORM takes for
    loaded rows): a decision batch builds one per request, and keyword construction looks
    up every other field's default on each."""
    args = [
        values[name] if name in values else (default() if factory else default)
        for name, default, factory in _message_defaults()
    ]
    return Message(*args)


def decision_apply(
    message: Message, decision: policy.Decision, snapshot: Snapshot, now: dt.datetime
) -> None:
    """Write a policy decision onto ``message``: status, reason, channel, address, render."""
    message.status = decision.status
    message.reason = decision.reason
    message.channel = decision.channel
    message.send_after = decision.send_after
    message.explanation = [
        {"channel": c.channel, "reason": c.reason, "detail": c.detail} for c in decision.checks
    ]
    message.updated_at = now
    if decision.status != policy.QUEUED:
        message.reserved_at = None
        return
    customer = snapshot.customers[message.customer_id or 0]
    address = decision.addresses[0]
    message.to_address, message.platform = address.value, address.platform
    message.reserved_at = None if message.is_transactional else now
    version_id = int(message.templates[decision.channel])
    version = _versions([version_id])[version_id]
    message.template_version = version
    try:
        _render(message, version, customer, snapshot, now)
    except RenderError as exc:
        message.status, message.reason = MessageStatus.FAILED, reasons.TEMPLATE_ERROR
        message.error = f"{exc.field}: {exc.message}"[:500]
        message.reserved_at, message.failed_at = None, now
        return
    if decision.channel == Channel.IN_APP:
        # Stored by Milepost and served over REST: delivered as soon as it is decided.
        message.status, message.sent_at = MessageStatus.SENT, now


_VERSION_CACHE: dict[int, TemplateVersion] = {}


def _versions(ids: Sequence[int]) -> dict[int, TemplateVersion]:
    """Template versions are immutable: each process keeps the ones it has read."""
    missing = [pk for pk in ids if pk not in _VERSION_CACHE]
    if missing:
        for version in TemplateVersion.objects.filter(pk__in=missing):
            _VERSION_CACHE[version.pk] = version
    return {pk: _VERSION_CACHE[pk] for pk in ids}


def render_context(
    customer: Customer, message: Message, extra: Mapping[str, Any], *, with_links: bool = True
) -> dict[str, Any]:
    """The plain data a template sees: the customer and account, the request's own context
    (milestone, progress, event) and the consent links (signed per message, so only made
    when the template or the channel uses them)."""
    claim = links.LinkClaim(customer.pk, message.channel, message.topic.key)
    context = {
        **extra,
        "customer": {
            "id": customer.pk,
            "external_id": customer.external_id or "",
            "email": customer.email,
            "phone": customer.phone,
            "plan": customer.plan,
            "region": customer.region,
            "locale": customer.locale,
            "time_zone": customer.time_zone,
            "lifecycle_stage": customer.lifecycle_stage,
            "traits": customer.traits,
            **{k: v for k, v in customer.traits.items() if isinstance(k, str)},
        },
        "account": (
            {"id": customer.account_id, **(customer.account.traits or {})}
            if customer.account_id and customer.account is not None
            else {}
        ),
    }
    if with_links:
        context["links"] = {
            "unsubscribe": links.link_url(links.UNSUBSCRIBE, claim),
            "preferences": links.link_url(links.PREFERENCES, claim),
        }
    return context


_USES_LINKS: dict[int, bool] = {}


def _uses_links(version: TemplateVersion) -> bool:
    if version.pk not in _USES_LINKS:
        _USES_LINKS[version.pk] = "links" in orjson.dumps(version.variants).decode()
    return _USES_LINKS[version.pk]


#: (template version, locale) whose fields passed ``fields_validate`` in this process:
#: versions are immutable, so they need not be validated again for every message.
_VALID: set[tuple[int, str]] = set()


def _render(
    message: Message,
    version: TemplateVersion,
    customer: Customer,
    snapshot: Snapshot,
    now: dt.datetime,
) -> None:
    locale, fields = variant_for(version.variants, customer.locale, version.default_locale)
    with_links = message.channel == Channel.EMAIL or _uses_links(version)
    context = render_context(customer, message, message.context, with_links=with_links)
    is_email = message.channel == Channel.EMAIL
    valid = (version.pk, locale) in _VALID
    rendered = render(
        message.channel, fields, context, text_version=not is_email, validate=not valid
    )
    _VALID.add((version.pk, locale))
    message.locale = locale
    if is_email:
        pk = message.pk
        source = str(rendered.get("html", ""))
        if rendered["text"]:
            html, tracked = links_track(source, partial(_click, pk))
        else:  # the text version made from the HTML in the same parse as the tracking
            html, tracked, rendered["text"] = links_track_with_text(source, partial(_click, pk))
        rendered["html"] = open_pixel_add(html, open_url(pk)) if html else html
        message.links = tracked
        if not message.is_transactional:
            # RFC 8058 one-click unsubscribe; a receipt or a security notice has nothing
            # to unsubscribe from.
            unsubscribe = context["links"]["unsubscribe"]
            rendered["headers"] = {
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
    message.rendered = rendered


def _click(message_id: int, index: int, url: str) -> str:
    return click_url(message_id, index)


def _by_channel(pairs: Sequence[tuple[str, int]]) -> dict[str, list[int]]:
    """Message ids per sending channel (in-app messages are not sent: they are read)."""
    found: dict[str, list[int]] = {}
    for channel, pk in pairs:
        if channel != Channel.IN_APP:
            found.setdefault(channel, []).append(pk)
    return found


def _dispatch(pairs: Sequence[tuple[str, int]]) -> None:
    """Wake each channel's send task with its message ids (after commit)."""
    from messaging.tasks import messages_send_task

    for channel, ids in _by_channel(pairs).items():
        messages_send_task(channel).delay(ids)


def _send_here(pairs: Sequence[tuple[str, int]]) -> None:
    """Send what may be sent inline (after commit); the rest goes to the send tasks. An
    error leaves the messages to the task too: its claim takes only rows still queued, and
    a row claimed here but not recorded is the reconciler's."""
    rest: list[tuple[str, int]] = []
    for channel, ids in _by_channel(pairs).items():
        try:
            left = sending.messages_send_inline(channel, ids)
        except Exception:
            logger.exception("sending %d %s messages inline failed", len(ids), channel)
            left = ids
        rest.extend((channel, pk) for pk in left)
    if rest:
        _dispatch(rest)


# --- Due work: deferred messages, retries, lost wake-ups, unrecorded sends ------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DueSummary:
    redecided: int
    dispatched: int
    reconciled: int


def messages_due_process(*, now: dt.datetime | None = None, batch: int = 500) -> DueSummary:
    """The beat tick: weigh deferred messages whose time has come through the policy again
    (consent or caps may have changed meanwhile), wake the send tasks for queued messages
    that are due (retries, lost wake-ups), and resolve sends claimed long ago and never
    recorded."""
    now = now or timezone.now()
    redecided = _deferred_redecide(now, batch)
    dispatched = _queued_dispatch(now, batch)
    reconciled = _sending_reconcile(now, batch)
    return DueSummary(redecided, dispatched, reconciled)


def _deferred_redecide(now: dt.datetime, batch: int) -> int:
    with transaction.atomic():
        due = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.DEFERRED, send_after__lte=now)
            .select_related("topic")
            .order_by("send_after", "pk")[:batch]
        )
        if not due:
            return 0
        customers_lock(sorted({m.customer_id for m in due if m.customer_id}))
        snapshot = snapshot_read([m.customer_id for m in due if m.customer_id], now)
        asks = [
            policy.Request(
                key=m.idempotency_key,
                customer_id=m.customer_id or 0,
                channels=tuple(m.channels),
                topic=m.topic.key,
                is_transactional=m.is_transactional,
                priority=m.priority,
                journey=m.journey_key,
            )
            for m in due
        ]
        for message, decision in zip(
            due, policy.decide(asks, snapshot.audiences, snapshot.rules, now), strict=True
        ):
            decision_apply(message, decision, snapshot, now)
        Message.objects.bulk_update(due, _DECISION_FIELDS)
        queued = [(m.channel, m.pk) for m in due if m.status == MessageStatus.QUEUED]
        if queued:
            transaction.on_commit(partial(_dispatch, queued))
    return len(due)


_DECISION_FIELDS = [
    "status",
    "reason",
    "channel",
    "send_after",
    "explanation",
    "to_address",
    "platform",
    "reserved_at",
    "template_version",
    "locale",
    "rendered",
    "links",
    "error",
    "failed_at",
    "sent_at",
    "updated_at",
]


def _queued_dispatch(now: dt.datetime, batch: int) -> int:
    """Queued messages that are due and untouched for 30 s: a retry whose time came (its
    row was last written when it was put back), or a wake-up lost with the broker. Waking
    a send twice is harmless: the claim lets one task through."""
    stale = now - dt.timedelta(seconds=30)
    rows = list(
        Message.objects.filter(status=MessageStatus.QUEUED, updated_at__lte=stale)
        .filter(models.Q(send_after__isnull=True) | models.Q(send_after__lte=now))
        .order_by("updated_at")
        .values_list("channel", "pk")[:batch]
    )
    if rows:
        # Touched, so a backlog the workers have not reached yet is woken again only every
        # 30 s, not on every tick.
        Message.objects.filter(pk__in=[pk for _, pk in rows], status=MessageStatus.QUEUED).update(
            updated_at=now
        )
        _dispatch(rows)
    return len(rows)


def _sending_reconcile(now: dt.datetime, batch: int) -> int:
    """Sends claimed long ago with no result recorded (the worker died in between)."""
    from messaging.channels.registry import backend_for

    stale = now - dt.timedelta(seconds=settings.MESSAGING_SENDING_STALE_SECONDS)
    rows = list(
        Message.objects.filter(status=MessageStatus.SENDING, claimed_at__lte=stale)
        .order_by("claimed_at")
        .values_list("pk", "channel")[:batch]
    )
    retried = [pk for pk, channel in rows if backend_for(channel).supports_idempotency]
    unknown = [pk for pk, channel in rows if pk not in set(retried)]
    if retried:
        # The provider deduplicates on our key: asking again cannot send twice.
        Message.objects.filter(pk__in=retried, status=MessageStatus.SENDING).update(
            status=MessageStatus.QUEUED, updated_at=now - dt.timedelta(minutes=1)
        )
    if unknown:
        Message.objects.filter(pk__in=unknown, status=MessageStatus.SENDING).update(
            status=MessageStatus.UNCONFIRMED, reason=reasons.SEND_UNCONFIRMED, updated_at=now
        )
    return len(rows)
