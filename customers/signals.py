"""The two custom signals through which ``customers`` publishes to the apps above it.

``customers`` imports none of them (DESIGN.md §3); they connect receivers in their
``AppConfig.ready``. Both are sent after the transaction that made the change commits,
so a receiver only ever sees durable data and may enqueue Celery work directly.

``events_ingested(sender, source_id, events)``
    ``events`` is a list of ``IngestedEvent`` — only events that were new (replays are
    excluded). This is the hand-off to milestone evaluation; until the milestones issue
    lands there is no receiver and sending it costs nothing.

``customers_merged(sender, source_customer_id, target_customer_id)``
    An anonymous or aliased customer was folded into another; its events, identities and
    devices now belong to the target and the source row is gone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.dispatch import Signal

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
