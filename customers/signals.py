"""The two custom signals through which ``customers`` publishes to the apps above it.

``customers`` imports none of them (DESIGN.md §3); they connect receivers in their
``AppConfig.ready``. Both are sent after the transaction that made the change commits,
so a receiver only ever sees durable data and may enqueue Celery work directly.

``events_stored(sender, source_id, events)``
    Sent *inside* the ingest transaction, right after the batch's new events are written,
    with the same ``events`` as below. A receiver may only write rows that belong with the
    events (durable follow-up work, such as the milestone evaluator's pending rows); it must
    not enqueue tasks or do I/O, and an exception rolls the batch back.

``events_ingested(sender, source_id, events)``
    ``events`` is a list of ``IngestedEvent`` — only events that were new (replays are
    excluded). Receivers wake the workers that process what ``events_stored`` recorded.

``customers_merged(sender, source_customer_id, target_customer_id)``
    An anonymous or aliased customer was folded into another; its events, identities and
    devices now belong to the target and the source row is gone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.dispatch import Signal

events_stored = Signal()
events_ingested = Signal()
customers_merged = Signal()


@dataclasses.dataclass(frozen=True, slots=True)
class IngestedEvent:
    id: int
    customer_id: int
    account_id: int | None
    type: str
    name: str
    occurred_at: dt.datetime
