"""Receivers of the ``customers`` signals (connected in ``MilestonesConfig.ready``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from config.wake import wake
from customers.signals import IngestedEvent
from milestones import evaluation
from milestones.registry import registry


def on_events_stored(sender: Any, *, events: Sequence[IngestedEvent], **kwargs: Any) -> None:
    evaluation.pending_record(events)


def on_events_ingested(sender: Any, *, events: Sequence[IngestedEvent], **kwargs: Any) -> None:
    from milestones.tasks import evaluate_task

    if evaluation.affected_pairs(registry(), events):
        wake(evaluate_task)


def on_customers_merged(
    sender: Any, *, source_customer_id: int, target_customer_id: int, **kwargs: Any
) -> None:
    from milestones.tasks import evaluate_task

    if evaluation.customer_merged(source_id=source_customer_id, target_id=target_customer_id):
        wake(evaluate_task)
