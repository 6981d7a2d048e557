"""Derived work commits asynchronously; sends' claims and ingest wait for the disk."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.durability import commit_async
from messaging.sending import messages_claim
from milestones.evaluation import pending_evaluate

pytestmark = pytest.mark.django_db

ASYNC = "SET LOCAL synchronous_commit = off"


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_the_setting_holds_for_the_transaction_only() -> None:
    with transaction.atomic():
        commit_async()
        inside = synchronous_commit()
    assert (inside, synchronous_commit()) == ("off", "on")


def test_it_can_be_turned_off(settings: Any) -> None:
    settings.DATABASE_ASYNC_COMMIT = False
    with transaction.atomic():
        commit_async()
        assert synchronous_commit() == "on"


def test_the_pipeline_commits_async_and_the_send_claim_does_not() -> None:
    with CaptureQueriesContext(connection) as evaluation:
        pending_evaluate()
    with CaptureQueriesContext(connection) as claim:
        messages_claim("email", [1, 2], now=timezone.now())

    assert [q["sql"] for q in evaluation.captured_queries].count(ASYNC) == 1
    assert ASYNC not in [q["sql"] for q in claim.captured_queries]
