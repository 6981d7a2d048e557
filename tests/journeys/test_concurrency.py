"""Concurrency on a real PostgreSQL: two workers entering the same customer respect the
re-entry policy, and two runners share due enrollments without doing a step twice."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from customers.models import Customer
from journeys import enrollment as enrollment_module
from journeys.enrollment import enroll, entries_from_outcomes
from journeys.models import Enrollment, StepRun
from journeys.runner import enrollments_advance
from journeys.services import journey_go_live, journey_save
from messaging.models import Message
from milestones.signals import OutcomeRecord
from tests.factories import CustomerFactory
from tests.journeys.conftest import MISSED, STEPS

pytestmark = pytest.mark.django_db(transaction=True)


def live() -> None:
    journey = journey_save(key="setup-nudge", name="Setup nudge", trigger=MISSED, steps=STEPS)
    journey_go_live(journey_id=journey.pk)


def missed(customer: Customer, outcome_id: int) -> OutcomeRecord:
    return OutcomeRecord(
        outcome_id, 1, 1, "activated", "customer", customer.pk, "missed", False, customer.created_at
    )


def in_threads(*work: Callable[[], Any]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(job: Callable[[], Any]) -> None:
        try:
            job()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_two_workers_entering_one_customer_at_once_enroll_once(
    ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: each worker pauses after reading the customer's earlier entries until the other
    # has read too (or a second has passed) — the moment a missing lock would let both in
    live()
    customer = CustomerFactory()
    both_read = threading.Barrier(2, timeout=1)
    read = enrollment_module.entries_latest

    def read_then_meet(*args: Any) -> Any:
        found = read(*args)
        # a broken barrier: the other worker is waiting for our lock; carry on
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait()
        return found

    monkeypatch.setattr(enrollment_module, "entries_latest", read_then_meet)

    # when: two different outcomes of the same customer, entering at once
    errors = in_threads(
        lambda: enroll(entries_from_outcomes([missed(customer, 1)])),
        lambda: enroll(entries_from_outcomes([missed(customer, 2)])),
    )

    # then: re-entry "never" holds
    assert errors == []
    assert Enrollment.objects.filter(customer=customer).count() == 1


def test_two_runners_share_due_enrollments_and_do_each_step_once(ready: None) -> None:
    live()
    customers = CustomerFactory.create_batch(120)
    enroll(entries_from_outcomes([missed(c, c.pk) for c in customers]))
    claimed: list[int] = []

    def runner() -> None:
        while count := enrollments_advance(batch=10):
            claimed.append(count)

    errors = in_threads(runner, runner)

    assert errors == []
    assert sum(claimed) == 120
    assert Enrollment.objects.filter(state="completed").count() == 120
    assert StepRun.objects.filter(step_key="nudge").count() == 120
    keys = list(Message.objects.values_list("idempotency_key", flat=True))
    assert (len(keys), len(set(keys))) == (120, 120)
