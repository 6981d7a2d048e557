"""Outgoing notices: notify steps' team emails and webhooks, and the signed webhooks of
outcome and journey events (milestone.achieved, milestone.missed, journey.entered,
journey.converted).

A notice is an outbox row written in the transaction that decided it, with a key that makes
writing it idempotent — an outcome handed on twice (its signal and the sweep), or a step run
twice, writes one row. ``notices_send`` claims due rows with ``SKIP LOCKED``, sends each after
the claim has committed and records the result: delivered, retried with exponential backoff
(``messaging.sending.retry_delay``) on a transient failure, or failed after
``JOURNEYS_NOTICE_MAX_ATTEMPTS`` or on a permanent one. A worker killed mid-send leaves its
rows claimed; after ``JOURNEYS_NOTICE_STALE_SECONDS`` they are sent again (a receiver dedupes
on the ``Milepost-Idempotency-Key`` header, which is the notice's key).

Team notices are not customer messages: no consent, caps or quiet hours apply to an email to
``sales@``. Webhooks are signed like webhook messages (``Milepost-Signature``), each endpoint
with its own secret derived from ``JOURNEYS_WEBHOOK_SIGNING_KEY`` (default ``SECRET_KEY``)
and its ``secret_version``; nothing secret is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.cache import cached
from config.wake import wake
from customers.models import Account, Customer
from journeys.graph import NotifyStep
from journeys.models import (
    Enrollment,
    Notice,
    NoticeKind,
    NoticeStatus,
    Team,
    WebhookEndpoint,
    WebhookEvent,
)
from messaging.channels.base import Outgoing, PermanentError, SendError, TransientError
from messaging.channels.registry import backend_for
from messaging.channels.webhook import WebhookBackend
from messaging.models import Template, TemplateStatus
from messaging.rendering import RenderError, render, variant_for
from messaging.sending import retry_delay
from milestones.signals import OutcomeRecord

logger = logging.getLogger(__name__)

NOTIFY_EVENT: Final = "journey.notify"
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# --- Webhook events ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookPayload:
    """One event as endpoints receive it: ``id`` is stable (a receiver dedupes on it)."""

    id: str
    type: str
    at: dt.datetime
    data: Mapping[str, Any]

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "created_at": self.at.isoformat(),
            "data": self.data,
        }


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    """The secret ``endpoint``'s receiver verifies signatures with (shown in the admin)."""
    key = settings.JOURNEYS_WEBHOOK_SIGNING_KEY or settings.SECRET_KEY
    message = f"milepost.webhook-endpoint:{endpoint.pk}:{endpoint.secret_version}"
    return "whsec_" + hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


@cached(WebhookEndpoint)
def _active_endpoints() -> tuple[WebhookEndpoint, ...]:
    """Active endpoints, cached per process (config/cache.py): outcomes and enrollments ask
    on every batch and must pay nothing when no endpoint is configured."""
    return tuple(WebhookEndpoint.objects.filter(is_active=True).order_by("pk"))


def _endpoints() -> tuple[WebhookEndpoint, ...]:
    return _active_endpoints.get()


def endpoint_secret_rotate(endpoint_id: int) -> None:
    """A new signing secret for the endpoint; the old one stops verifying at once."""
    with transaction.atomic():  # through save(), for the audit trail
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        endpoint.secret_version += 1
        endpoint.save(update_fields=["secret_version"])  # the cache forgets on post_save


def endpoints_forget() -> None:
    """Drop the cached endpoints (after an update in this process, and in tests)."""
    _active_endpoints.forget()


def wants(event_type: str) -> bool:
    """Whether any active endpoint receives ``event_type`` (cheap: cached)."""
    return any(_subscribed(e, event_type) for e in _endpoints())


def _subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return not endpoint.events or event_type in endpoint.events


def webhooks_write(payloads: Iterable[WebhookPayload]) -> None:
    """Write one notice per (payload, subscribed endpoint)."""
    endpoints = _endpoints()
    notices = [
        Notice(
            key=f"endpoint:{endpoint.pk}:{payload.id}",
            kind=NoticeKind.WEBHOOK,
            event=payload.type,
            endpoint=endpoint,
            to=endpoint.url,
            payload=payload.body(),
            next_attempt_at=payload.at,
        )
        for payload in payloads
        for endpoint in endpoints
        if _subscribed(endpoint, payload.type)
    ]
    notices_write(notices)


def notices_write(notices: Sequence[Notice]) -> None:
    """Insert ``notices`` (a key seen before is skipped) and wake the sender after commit."""
    if not notices:
        return
    Notice.objects.bulk_create(notices, ignore_conflicts=True)
    transaction.on_commit(_wake)


def _wake() -> None:
    from journeys.tasks import notices_send_task

    wake(notices_send_task)


def outcome_payloads(outcomes: Sequence[OutcomeRecord]) -> list[WebhookPayload]:
    """milestone.achieved / milestone.missed for each outcome (customer and account)."""
    if not outcomes:
        return []
    ids = {
        unit: [o.subject_id for o in outcomes if o.unit == unit] for unit in ("customer", "account")
    }
    external: dict[str, dict[int, str | None]] = {
        "customer": dict(
            Customer.objects.filter(pk__in=ids["customer"]).values_list("pk", "external_id")
        ),
        "account": dict(
            Account.objects.filter(pk__in=ids["account"]).values_list("pk", "external_id")
        ),
    }
    now = timezone.now()
    return [
        WebhookPayload(
            id=f"outcome:{o.id}",
            type=f"milestone.{o.kind}",
            at=now,
            data={
                "milestone": o.key,
                "outcome_id": o.id,
                "unit": o.unit,
                o.unit: {
                    "id": o.subject_id,
                    "external_id": external.get(o.unit, {}).get(o.subject_id),
                },
                "is_late": o.is_late,
                "occurred_at": o.occurred_at.isoformat(),
            },
        )
        for o in outcomes
    ]


def enrollment_payloads(enrollments: Sequence[Enrollment], event_type: str) -> list[WebhookPayload]:
    """journey.entered or journey.converted for each enrollment."""
    if not enrollments:
        return []
    external = dict(
        Customer.objects.filter(pk__in={e.customer_id for e in enrollments}).values_list(
            "pk", "external_id"
        )
    )
    now = timezone.now()
    payloads = []
    for enrollment in enrollments:
        data: dict[str, Any] = {
            "journey": enrollment.journey.key,
            "version": enrollment.version.number,
            "enrollment_id": enrollment.pk,
            "customer": {
                "id": enrollment.customer_id,
                "external_id": external.get(enrollment.customer_id),
            },
            "state": enrollment.state,
            "entered_at": enrollment.entered_at.isoformat(),
        }
        if event_type == WebhookEvent.JOURNEY_CONVERTED:
            converted = enrollment.converted_at
            data["converted_at"] = converted.isoformat() if converted else None
            data["goal"] = (enrollment.version.goal or {}).get("milestone")
        suffix = event_type.rpartition(".")[2]
        payloads.append(
            WebhookPayload(f"enrollment:{enrollment.pk}:{suffix}", event_type, now, data)
        )
    return payloads


# --- Notify steps --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Recipients:
    """Where one notify step goes: addresses to email, URLs to POST, and why any part could
    not be resolved (an account without an owner, a team without an address)."""

    emails: list[str] = dataclasses.field(default_factory=list)
    webhooks: list[str] = dataclasses.field(default_factory=list)
    problem: str = ""


def recipients_resolve(to: str, customer: Customer, teams: Mapping[str, Team]) -> Recipients:
    """Resolve a notify step's ``to`` for ``customer``."""
    found = Recipients()
    if to.startswith("email:"):
        found.emails.append(to.removeprefix("email:"))
    elif to.startswith("webhook:"):
        found.webhooks.append(to.removeprefix("webhook:"))
    elif to == "account_owner":
        account = customer.account if customer.account_id else None
        owner = str((account.traits or {}).get("owner_email", "")) if account else ""
        if _EMAIL.fullmatch(owner):
            found.emails.append(owner)
        else:
            found.problem = (
                "the customer has no account" if account is None
                else "the account has no valid owner_email trait"
            )  # fmt: skip
    else:
        team = teams.get(to)
        if team is not None and team.email:
            found.emails.append(team.email)
        if team is not None and team.webhook_url:
            found.webhooks.append(team.webhook_url)
        if not found.emails and not found.webhooks:
            found.problem = f"no team {to!r} with an email or webhook is set up"
    return found


def notify_notices(
    enrollment: Enrollment, step: NotifyStep, key: str, recipients: Recipients, now: dt.datetime
) -> list[Notice]:
    """The notices of one notify step run (``key``: the step run's idempotency key)."""
    customer = enrollment.customer
    context = {
        "journey": {
            "key": enrollment.journey.key,
            "name": enrollment.journey.name,
            "step": step.key,
        },
        "customer": {
            **{k: v for k, v in (customer.traits or {}).items() if isinstance(k, str)},
            "id": customer.pk,
            "external_id": customer.external_id or "",
            "email": customer.email,
            "plan": customer.plan,
            "region": customer.region,
            "lifecycle_stage": customer.lifecycle_stage,
            "traits": customer.traits,
        },
        "account": (
            {
                **(customer.account.traits or {}),
                "id": customer.account_id,
                "name": customer.account.name,
                "plan": customer.account.plan,
            }
            if customer.account_id and customer.account is not None
            else {}
        ),
    }
    notices = [
        Notice(
            key=f"{key}:email:{address.lower()}",
            kind=NoticeKind.EMAIL,
            event=NOTIFY_EVENT,
            enrollment=enrollment,
            to=address,
            template=step.template or "",
            payload=context,
            next_attempt_at=now,
            created_at=now,
        )
        for address in dict.fromkeys(recipients.emails)
    ]
    body = WebhookPayload(key, NOTIFY_EVENT, now, context).body()
    notices += [
        Notice(
            # The URL hashed: a long one would not fit the key, and cut it could collide.
            key=f"{key}:webhook:{hashlib.sha256(url.encode()).hexdigest()[:32]}",
            kind=NoticeKind.WEBHOOK,
            event=NOTIFY_EVENT,
            enrollment=enrollment,
            to=url,
            template=step.template or "",
            payload=body,
            next_attempt_at=now,
            created_at=now,
        )
        for url in dict.fromkeys(recipients.webhooks)
    ]
    return notices


def teams_load() -> dict[str, Team]:
    return {team.key: team for team in Team.objects.all()}


# --- Sending -------------------------------------------------------------------------------


def notices_send(*, now: dt.datetime | None = None, batch: int | None = None) -> int:
    """Claim up to ``batch`` due notices, send them, record each result; returns how many
    were claimed."""
    now = now or timezone.now()
    claimed = _claim(now, batch or settings.JOURNEYS_NOTICE_BATCH)
    backends: dict[str, WebhookBackend] = {}
    for notice in claimed:
        _record(notice, _send(notice, backends), now)
    return len(claimed)


def _claim(now: dt.datetime, size: int) -> list[Notice]:
    stale = now - dt.timedelta(seconds=settings.JOURNEYS_NOTICE_STALE_SECONDS)
    with transaction.atomic():
        due = list(
            Notice.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                Q(status=NoticeStatus.PENDING, next_attempt_at__lte=now)
                | Q(status=NoticeStatus.SENDING, claimed_at__lt=stale)
            )
            .select_related("endpoint")
            .order_by("next_attempt_at", "pk")[:size]
        )
        for notice in due:
            notice.status, notice.claimed_at = NoticeStatus.SENDING, now
            notice.attempts += 1
        Notice.objects.bulk_update(due, ["status", "claimed_at", "attempts"])
    return due


def _send(notice: Notice, backends: dict[str, WebhookBackend]) -> Exception | None:
    try:
        if notice.kind == NoticeKind.EMAIL:
            backend_for("email").send(_email(notice))
        else:
            secret = endpoint_secret(notice.endpoint) if notice.endpoint else None
            backend = backends.get(secret or "")
            if backend is None:
                backend = backends[secret or ""] = WebhookBackend(secret=secret)
            backend.send(
                Outgoing(
                    message_id=notice.pk,
                    idempotency_key=notice.key,
                    channel="webhook",
                    to=notice.to,
                    content=notice.payload,
                )
            )
    except SendError as exc:
        return exc
    except Exception as exc:  # a bug or an outage we did not foresee: retry, and say so
        logger.exception("notice %s failed", notice.pk)
        return TransientError(f"{type(exc).__name__}: {exc}")
    return None


def _email(notice: Notice) -> Outgoing:
    template = (
        Template.objects.select_related("active_version")
        .filter(key=notice.template, status=TemplateStatus.ACTIVE)
        .first()
    )
    if template is None or template.active_version is None or template.channel != "email":
        raise PermanentError(f"template {notice.template!r} is not an active email template")
    version = template.active_version
    _, fields = variant_for(version.variants, "", version.default_locale)
    try:
        content = render("email", fields, notice.payload)
    except RenderError as exc:
        raise PermanentError(f"template {notice.template!r} does not render: {exc}") from exc
    return Outgoing(
        message_id=notice.pk,
        idempotency_key=notice.key,
        channel="email",
        to=notice.to,
        content=content,
    )


def _record(notice: Notice, error: Exception | None, now: dt.datetime) -> None:
    changes: dict[str, Any] = {"claimed_at": None}
    if error is None:
        changes |= {
            "status": NoticeStatus.DELIVERED,
            "delivered_at": timezone.now(),
            "last_error": "",
        }
    elif (
        isinstance(error, PermanentError)
        or notice.attempts >= settings.JOURNEYS_NOTICE_MAX_ATTEMPTS
    ):
        changes |= {"status": NoticeStatus.FAILED, "last_error": str(error)[:500]}
    else:
        retry_after = error.retry_after if isinstance(error, SendError) else None
        delay = retry_delay(notice.attempts, retry_after)
        changes |= {
            "status": NoticeStatus.PENDING,
            "last_error": str(error)[:500],
            "next_attempt_at": now + dt.timedelta(seconds=delay),
        }
    # Only the claim this worker holds: a stale reclaim by another worker wins.
    Notice.objects.filter(
        pk=notice.pk, status=NoticeStatus.SENDING, claimed_at=notice.claimed_at
    ).update(**changes)


def notices_retry(notice_ids: Sequence[int], *, now: dt.datetime | None = None) -> int:
    """Send failed notices again from the first attempt (an admin action)."""
    now = now or timezone.now()
    count = Notice.objects.filter(pk__in=list(notice_ids), status=NoticeStatus.FAILED).update(
        status=NoticeStatus.PENDING, attempts=0, next_attempt_at=now, last_error=""
    )
    if count:
        transaction.on_commit(_wake)
    return count
