"""The hooks through which ``milestones`` publishes to the apps above it (journeys).

Both are sent after the transaction that recorded the change commits (``on_commit``), so a
receiver only sees durable rows and may enqueue work directly. A receiver must be
idempotent: the rows are unique, but a crash between commit and send loses the call, and
the journeys' own sweep is what picks such rows up (DESIGN.md §2.1).

``outcomes_recorded(sender, outcomes)``
    ``outcomes`` is a list of ``OutcomeRecord``: each achieved or missed outcome, once.

``stage_changed(sender, changes)``
    ``changes`` is a list of ``StageChangeRecord``: a customer's lifecycle stage moved.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.dispatch import Signal

outcomes_recorded = Signal()
stage_changed = Signal()


@dataclasses.dataclass(frozen=True, slots=True)
class OutcomeRecord:
    id: int
    definition_id: int
    version_id: int
    key: str
    unit: str
    subject_id: int
    kind: str
    is_late: bool
    occurred_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class StageChangeRecord:
    customer_id: int
    from_stage: str
    to_stage: str
    changed_at: dt.datetime
