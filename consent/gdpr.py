"""GDPR: export everything held about a customer, and erase a customer.

This is the one module that knows every place personal data lives. The apps above consent
(milestones, messaging, journeys) are reached with ``apps.get_model`` rather than imports,
so the dependency direction of DESIGN.md §3 holds.

Erasing deletes the customer with their events, identities, devices, consent records and
milestone state, blanks the rendered content and addresses of their messages (the send log
keeps its counts and reasons, anonymised), and suppresses every address they had — by
keyed hash only — so an erased, opted-out address stays opted out if it comes back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms.models import model_to_dict
from django.utils import timezone

from consent.models import (
    AddressKind,
    ConsentRecord,
    Preference,
    Subscription,
    Suppression,
    SuppressionReason,
)
from consent.services import address_hash
from customers.models import Customer, Device, Event, Identity

logger = logging.getLogger(__name__)


def _model(label: str) -> type[Model] | None:
    try:
        return apps.get_model(label)
    except LookupError:  # an app that is not installed holds nothing
        return None


def _rows(queryset: QuerySet[Any], *exclude: str) -> list[dict[str, Any]]:
    return [
        {k: _plain(v) for k, v in model_to_dict(row).items() if k not in exclude} | {"id": row.pk}
        for row in queryset
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Model):
        return value.pk
    return value


def _addresses(customer: Customer) -> list[tuple[str, str]]:
    found = [(AddressKind.EMAIL.value, customer.email), (AddressKind.PHONE.value, customer.phone)]
    found += [
        (AddressKind.DEVICE_TOKEN.value, token)
        for token in Device.objects.filter(customer=customer).values_list("token", flat=True)
    ]
    return [(kind, value) for kind, value in found if value]


def customer_export(*, customer_id: int) -> dict[str, Any]:
    """Everything held about the customer, as JSON-ready data."""
    customer = Customer.objects.get(pk=customer_id)
    hashes = [address_hash(kind, value) for kind, value in _addresses(customer)]
    data: dict[str, Any] = {
        "exported_at": timezone.now().isoformat(),
        "customer": _rows(Customer.objects.filter(pk=customer_id))[0],
        "identities": _rows(Identity.objects.filter(customer_id=customer_id)),
        "devices": _rows(Device.objects.filter(customer_id=customer_id)),
        "events": _rows(Event.objects.filter(customer_id=customer_id).order_by("occurred_at")),
        "subscriptions": _rows(Subscription.objects.filter(customer_id=customer_id)),
        "consent_records": _rows(
            ConsentRecord.objects.filter(customer_id=customer_id).order_by("created_at")
        ),
        "preference": _rows(Preference.objects.filter(customer_id=customer_id)),
        "suppressions": _rows(Suppression.objects.filter(address_hash__in=hashes), "address_hash"),
    }
    for name, label, field in _ABOVE:
        model = _model(label)
        if model is not None:
            data[name] = _rows(model._default_manager.filter(**_subject(field, customer_id)))
    return data


# (export key, model label, the field that names the customer)
_ABOVE = (
    ("milestone_progress", "milestones.Progress", "subject_id"),
    ("milestone_outcomes", "milestones.MilestoneOutcome", "subject_id"),
    ("stage_changes", "milestones.StageChange", "customer_id"),
    ("messages", "messaging.Message", "customer_id"),
    ("journey_enrollments", "journeys.Enrollment", "customer_id"),
)


def _subject(field: str, customer_id: int) -> dict[str, Any]:
    lookup: dict[str, Any] = {field: customer_id}
    if field == "subject_id":
        lookup["unit"] = "customer"
    return lookup


@dataclasses.dataclass(frozen=True, slots=True)
class ErasureSummary:
    events: int
    suppressed_addresses: int
    messages_blanked: int


def customer_erase(*, customer_id: int) -> ErasureSummary:
    """Erase the customer in one transaction (see the module docstring)."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_id)
        addresses = _addresses(customer)
        for kind, value in addresses:
            digest = address_hash(kind, value)
            suppression, created = Suppression.objects.get_or_create(
                kind=kind,
                address_hash=digest,
                defaults={"reason": SuppressionReason.ERASED, "address": ""},
            )
            if not created and suppression.address:
                suppression.address = ""
                suppression.save(update_fields=["address"])
        blanked = 0
        message = _model("messaging.Message")
        if message is not None:
            blanked = message._default_manager.filter(customer_id=customer_id).update(
                rendered={}, context={}, links=[], to_address="", customer=None
            )
        for label, field in (
            ("milestones.Progress", "subject_id"),
            ("milestones.MilestoneOutcome", "subject_id"),
            ("milestones.PendingEvaluation", "subject_id"),
        ):
            model = _model(label)
            if model is not None:
                lookup: dict[str, Any] = {field: customer_id}
                if label == "milestones.PendingEvaluation":
                    lookup["version__unit"] = "customer"
                else:
                    lookup["unit"] = "customer"
                model._default_manager.filter(**lookup).delete()
        events, _ = Event.objects.filter(customer_id=customer_id).delete()
        # The ledger is append-only row by row; erasure is the one bulk delete it allows.
        ConsentRecord.objects.filter(customer_id=customer_id)._raw_delete(ConsentRecord.objects.db)
        customer.delete()  # identities, devices, subscriptions, preference, stage history
    logger.info("customer %s erased", customer_id)
    return ErasureSummary(events, len(addresses), blanked)
