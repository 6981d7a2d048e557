"""Caps under concurrency, on real transactions: many workers asking for messages for one
customer at once never exceed a cap, and the same key asked for at once is decided once."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection

from customers.models import Customer
from messaging.models import FrequencyCap, Message, Template
from messaging.services import SendRequest, messages_request

pytestmark = pytest.mark.django_db(transaction=True)


def _race(workers: list[Callable[[], object]]) -> list[BaseException]:
    """Run ``workers`` at once, each on its own connection, released together."""
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(work: Callable[[], object]) -> None:
        try:
            start.wait()
            work()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_eight_workers_racing_on_one_customer_never_exceed_the_cap(
    templates: dict[str, Template], customer: Customer
) -> None:
    FrequencyCap.objects.create(
        name="3 a week", scope="marketing", limit=3, window=dt.timedelta(days=7)
    )

    def worker(n: int) -> Callable[[], object]:
        batch = [SendRequest(f"w{n}-{i}", customer.pk, ("tips-email",)) for i in range(3)]
        return lambda: messages_request(batch)

    errors = _race([worker(n) for n in range(8)])

    assert errors == []
    statuses = Counter(Message.objects.values_list("status", "reason"))
    assert statuses == Counter({("queued", ""): 3, ("suppressed", "frequency_cap"): 21})


def test_the_same_key_asked_for_by_two_workers_at_once_makes_one_message(
    templates: dict[str, Template], customer: Customer
) -> None:
    ids: list[list[int]] = []

    def ask() -> None:
        ids.append(messages_request([SendRequest("same", customer.pk, ("tips-email",))]))

    errors = _race([ask, ask, ask])

    assert errors == []
    assert Message.objects.count() == 1
    assert ids == [[Message.objects.get().pk]] * 3
