"""The customer 360: what support reads when a customer asks "why did I get this?" — account,
consent per topic and channel, journeys, recent messages with the policy's reasons.

Reads go through the owning apps' selectors where they exist (consent, journeys) and every
list is bounded, so the page costs a fixed number of queries however long the customer's
history is (see ``customer_360``). Milestones and events keep their own sections
(``milestones.admin.subject_milestones``, ``customers.admin.CustomerAdmin.recent_events``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any, Final

from django.db.models import QuerySet
from django.utils import timezone

from audience.rows import (
    AccountSummary,
    AddressRow,
    ChannelAddresses,
    ConsentRow,
    ConsentView,
    Customer360,
    EnrollmentRow,
    MessageRow,
    PreferenceSummary,
    StepRunRow,
    SuppressionInfo,
    TemplateRef,
    consent_cell,
    last_runs,
    step_type,
    variant_pairs,
)
from consent.models import AddressKind, Channel, SubscriptionStatus, Suppression
from consent.preferences import DEFAULT_PERIOD_DAYS
from consent.selectors import preferences_for, region_policy_for, subscriptions_for, topics_by_key
from consent.services import address_hash
from customers.models import Account, Customer, Device
from journeys.api.selectors import customer_enrollments
from journeys.models import Enrollment, EnrollmentState, StepRun
from messaging.explain import channel_label, message_reason, status_sentence
from messaging.models import Message, MessageStatus, TemplateVersion

#: Every channel, in the order the matrix shows them.
CHANNELS: Final = tuple(Channel.values)
ENROLLMENTS_SHOWN: Final = 10
RUNS_SHOWN: Final = 5
MESSAGES_SHOWN: Final = 20
#: Active push tokens checked against the suppression list, most recently seen first.
DEVICES_SHOWN: Final = 10
_TOKEN_CHARS: Final = 12
_MISSING: Final = {
    Channel.EMAIL: "no email address",
    Channel.SMS: "no phone number",
    Channel.PUSH: "no active device",
    Channel.IN_APP: "",
}


def customer_360(customer_id: int, *, now: dt.datetime | None = None) -> Customer360:
    """Everything the customer page adds to the customer row, in at most eleven queries
    whatever the history size: the customer with its account; the region policy, topics,
    subscriptions, preference, active devices and the suppressions of the addresses (none
    when there is no address); the latest enrollments and their step runs (none without
    enrollments); the latest messages and the templates asked of those that chose no channel
    (none when every one did).

    Raises ``Customer.DoesNotExist`` for an unknown id."""
    now = now or timezone.now()
    customer = Customer.objects.select_related("account").get(pk=customer_id)
    enrollments, more_enrollments = enrollments_recent(customer_id=customer.pk)
    messages, more_messages = messages_recent(customer_id=customer.pk)
    return Customer360(
        customer_id=customer.pk,
        label=str(customer),
        account=_account(customer.account),
        consent=consent_view(customer=customer, now=now),
        enrollments=enrollments,
        more_enrollments=more_enrollments,
        messages=messages,
        more_messages=more_messages,
    )


def _account(account: Account | None) -> AccountSummary | None:
    if account is None:
        return None
    return AccountSummary(
        id=account.pk,
        external_id=account.external_id,
        name=account.name,
        plan=account.plan,
        status=account.get_status_display(),
    )


# --- Consent ----------------------------------------------------------------------------------


def consent_view(*, customer: Customer, now: dt.datetime) -> ConsentView:
    """Every active topic on every channel with the stored and effective consent, the
    addresses each channel reaches and their suppressions, and the frequency choice."""
    rule = region_policy_for(customer.region)
    statuses = subscriptions_for([customer.pk])[customer.pk]
    topics = sorted(
        (topic for topic in topics_by_key().values() if topic.is_active),
        key=lambda topic: (topic.is_transactional, topic.name, topic.key),
    )
    rows = tuple(
        ConsentRow(
            topic_key=topic.key,
            topic_name=topic.name,
            is_transactional=topic.is_transactional,
            cells=tuple(
                consent_cell(
                    channel,
                    statuses.get((channel, topic.key), SubscriptionStatus.UNKNOWN),
                    rule,
                    is_transactional=topic.is_transactional,
                )
                for channel in CHANNELS
            ),
        )
        for topic in topics
    )
    preference = preferences_for([customer.pk]).get(customer.pk)
    return ConsentView(
        region=customer.region,
        mode=rule.mode,
        requires_double_opt_in=rule.requires_double_opt_in,
        channels=channel_addresses(customer),
        rows=rows,
        preference=PreferenceSummary(
            is_set=preference is not None,
            max_marketing=preference.max_marketing if preference else None,
            period_days=preference.period_days if preference else DEFAULT_PERIOD_DAYS,
            paused_until=(
                preference.paused_until
                if preference and preference.paused_until and preference.paused_until > now
                else None
            ),
            updated_at=preference.updated_at if preference else None,
        ),
    )


def channel_addresses(customer: Customer) -> tuple[ChannelAddresses, ...]:
    """The addresses each channel reaches, as the delivery policy sees them (email, phone,
    active push tokens; in-app needs none), each with its suppression if it has one."""
    wanted: dict[str, list[tuple[str, str, str]]] = {channel: [] for channel in CHANNELS}
    if customer.email:
        wanted[Channel.EMAIL].append((AddressKind.EMAIL, customer.email, customer.email))
    if customer.phone:
        wanted[Channel.SMS].append((AddressKind.PHONE, customer.phone, customer.phone))
    devices = Device.objects.filter(customer_id=customer.pk, is_active=True).order_by(
        "-last_seen", "-id"
    )
    for platform, token in devices.values_list("platform", "token")[:DEVICES_SHOWN]:
        wanted[Channel.PUSH].append(
            (AddressKind.DEVICE_TOKEN, token, _token_label(platform, token))
        )
    hashes = {
        (kind, value): address_hash(kind, value)
        for found in wanted.values()
        for kind, value, _ in found
    }
    suppressions = suppressions_among({(kind, digest) for (kind, _), digest in hashes.items()})
    in_app = (AddressRow("customer", "in the product"),)
    return tuple(
        ChannelAddresses(
            channel=channel,
            label=channel_label(channel),
            addresses=in_app
            if channel == Channel.IN_APP
            else tuple(
                AddressRow(kind, label, suppressions.get((kind, hashes[(kind, value)])))
                for kind, value, label in wanted[channel]
            ),
            missing=_MISSING[Channel(channel)],
        )
        for channel in CHANNELS
    )


def _token_label(platform: str, token: str) -> str:
    shown = token if len(token) <= _TOKEN_CHARS else f"{token[:_TOKEN_CHARS]}…"
    return f"{platform} {shown}"


def suppressions_among(
    pairs: Collection[tuple[str, str]],
) -> dict[tuple[str, str], SuppressionInfo]:
    """Which of the (address kind, hash) pairs are suppressed, and why — the rows behind
    ``consent.selectors.suppressed_among``, which answers only whether; one query, none for
    no pairs."""
    if not pairs:
        return {}
    wanted = frozenset(pairs)
    rows = Suppression.objects.filter(
        address_hash__any=sorted({digest for _, digest in wanted})
    ).only("kind", "address_hash", "reason", "note", "created_at")
    return {
        (row.kind, row.address_hash): SuppressionInfo(
            row.get_reason_display(), row.note, row.created_at
        )
        for row in rows
        if (row.kind, row.address_hash) in wanted
    }


# --- Journeys ---------------------------------------------------------------------------------


def enrollments_recent(*, customer_id: int) -> tuple[tuple[EnrollmentRow, ...], bool]:
    """The customer's latest ``ENROLLMENTS_SHOWN`` enrollments, newest first, each with its
    last ``RUNS_SHOWN`` step runs, and whether older enrollments exist: two queries
    (``journeys.api.selectors.customer_enrollments``), one without enrollments. A version's
    step graph has no loops, so an enrollment's runs are as many as its steps and retries."""
    found: QuerySet[Enrollment] = customer_enrollments(customer_id=customer_id).order_by(
        "-entered_at", "-id"
    )
    enrollments = list(found[: ENROLLMENTS_SHOWN + 1])
    rows = tuple(_enrollment_row(e) for e in enrollments[:ENROLLMENTS_SHOWN])
    return rows, len(enrollments) > ENROLLMENTS_SHOWN


def _enrollment_row(enrollment: Enrollment) -> EnrollmentRow:
    runs, earlier = last_runs([_run_row(run) for run in enrollment.runs.all()], RUNS_SHOWN)
    return EnrollmentRow(
        id=enrollment.pk,
        journey_id=enrollment.journey_id,
        journey_name=enrollment.journey.name,
        journey_key=enrollment.journey.key,
        version_number=enrollment.version.number,
        state=enrollment.state,
        state_label=enrollment.get_state_display(),
        current_step=enrollment.current_step,
        current_step_type=step_type(enrollment.version.steps, enrollment.current_step),
        next_run_at=enrollment.next_run_at,
        entered_at=enrollment.entered_at,
        finished_at=enrollment.finished_at,
        exit_reason=enrollment.exit_reason,
        converted_at=enrollment.converted_at,
        variants=variant_pairs(enrollment.variants),
        is_holdout=enrollment.state == EnrollmentState.HOLDOUT,
        runs=runs,
        earlier_runs=earlier,
    )


def _run_row(run: StepRun) -> StepRunRow:
    # ``customer_enrollments`` annotates each run with its message's {id, status, channel}.
    annotated: Any = getattr(run, "message", None)
    message: Mapping[str, Any] = annotated if isinstance(annotated, Mapping) else {}
    return StepRunRow(
        at=run.at,
        step_key=run.step_key,
        attempt=run.attempt,
        status=run.status,
        message_id=run.message_id,
        message_status=str(message.get("status") or ""),
        message_channel=channel_label(str(message["channel"])) if message.get("channel") else "",
    )


# --- Messages ---------------------------------------------------------------------------------


def messages_recent(*, customer_id: int) -> tuple[tuple[MessageRow, ...], bool]:
    """The customer's latest ``MESSAGES_SHOWN`` messages, newest first (the ``message_customer``
    index), each with its status and the policy's reason in words, and whether older ones
    exist: one query, and one more for the templates asked of messages that chose no channel;
    rendered content is not read."""
    found = (
        Message.objects.filter(customer_id=customer_id)
        .select_related("topic", "template_version__template")
        .defer("rendered", "context", "links")
        .order_by("-created_at", "-id")
    )
    messages = list(found[: MESSAGES_SHOWN + 1])
    shown = messages[:MESSAGES_SHOWN]
    asked = _versions_asked([m for m in shown if m.template_version is None])
    rows = tuple(_message_row(m, asked) for m in shown)
    return rows, len(messages) > MESSAGES_SHOWN


def _asked(message: Message) -> list[int]:
    """The template version ids the message asked for, in its channels' order."""
    templates = message.templates if isinstance(message.templates, Mapping) else {}
    channels = message.channels if isinstance(message.channels, list) else []
    found = [templates.get(channel) for channel in channels]
    return [pk for pk in found if isinstance(pk, int)]


def _versions_asked(messages: Collection[Message]) -> dict[int, TemplateRef]:
    ids = sorted({pk for message in messages for pk in _asked(message)})
    if not ids:
        return {}
    rows = TemplateVersion.objects.filter(pk__any=ids).values_list(
        "pk", "template_id", "template__key", "number"
    )
    return {pk: TemplateRef(template_id, key, number) for pk, template_id, key, number in rows}


def _message_row(message: Message, asked: Mapping[int, TemplateRef]) -> MessageRow:
    version = message.template_version
    channels = message.channels if isinstance(message.channels, list) else []
    if version is not None:
        templates: tuple[TemplateRef, ...] = (
            TemplateRef(version.template_id, version.template.key, version.number),
        )
    else:
        templates = tuple(asked[pk] for pk in _asked(message) if pk in asked)
    return MessageRow(
        id=message.pk,
        created_at=message.created_at,
        channel=channel_label(message.channel) if message.channel else "",
        channels_asked=", ".join(channel_label(str(channel)) for channel in channels),
        topic=message.topic.name,
        is_transactional=message.is_transactional,
        templates=templates,
        journey_key=message.journey_key,
        status=message.status,
        status_label=message.get_status_display(),
        status_sentence=status_sentence(message.status),
        reason=message.reason,
        reason_sentence=message_reason(
            message.reason, message.explanation, error=message.error, until=_until(message)
        ),
    )


def _until(message: Message) -> str:
    # As the message's own page says it (messaging.admin.messages.why_reason).
    if message.status != MessageStatus.DEFERRED or message.send_after is None:
        return ""
    return f"{message.send_after.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
