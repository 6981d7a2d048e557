"""``customer_360``: the read model behind the customer page, in a fixed number of queries."""

from __future__ import annotations

from typing import Any

import pytest

from audience.rows import AccountSummary, ConsentCell, StepRunRow, SuppressionInfo
from audience.selectors import customer_360
from customers.models import Customer
from tests.audience.conftest import NOW, Seeded
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_it_reads_a_customer_with_a_full_history_in_eleven_queries(
    seeded: Seeded, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(11):
        view = customer_360(seeded.customer.pk)

    assert view.label == "ada"
    assert view.account == AccountSummary(
        id=seeded.customer.account_id,  # type: ignore[arg-type]
        external_id="acme",
        name="Acme Analytics",
        plan="enterprise",
        status="Active",
    )
    assert [m.id for m in view.messages] == [seeded.push.pk, seeded.sent.pk, seeded.journey_sms.pk]
    assert (view.more_enrollments, view.more_messages) == (False, False)


def test_a_customer_without_history_needs_eight_queries(
    frozen: None, django_assert_num_queries: Any
) -> None:
    customer = CustomerFactory(email="", phone="", account=None)

    with django_assert_num_queries(8):
        view = customer_360(customer.pk)

    assert (view.account, view.enrollments, view.messages) == (None, (), ())
    assert view.consent.rows == ()
    assert [(c.channel, c.addresses, c.missing) for c in view.consent.channels][:3] == [
        ("email", (), "no email address"),
        ("sms", (), "no phone number"),
        ("push", (), "no active device"),
    ]


def test_the_consent_view_has_the_cells_the_rule_decides_and_the_suppression(
    seeded: Seeded,
) -> None:
    consent = customer_360(seeded.customer.pk).consent

    tips = consent.rows[0]
    assert (tips.topic_key, tips.is_transactional) == ("tips", False)
    assert tips.cells == (
        ConsentCell("email", "opted_in", True, False, "opted in"),
        ConsentCell("sms", "opted_in", True, False, "opted in"),
        ConsentCell("push", "unknown", False, False, "opt-in region"),
        ConsentCell("in_app", "unknown", True, False, "in-app messages need no opt-in"),
    )
    sms = consent.channels[1]
    assert sms.is_suppressed is True
    assert sms.addresses[0].suppression == SuppressionInfo("Hard bounce", "carrier: unknown", NOW)
    assert [c.is_suppressed for c in consent.channels] == [False, True, False, False]


def test_an_enrollment_keeps_its_runs_with_their_messages(seeded: Seeded) -> None:
    (enrollment,) = customer_360(seeded.customer.pk).enrollments

    assert (enrollment.current_step, enrollment.current_step_type) == ("pause", "wait")
    assert enrollment.runs == (
        StepRunRow(NOW, "nudge", 1, "done", seeded.journey_sms.pk, "suppressed", ""),
    )
    assert enrollment.earlier_runs == 0


def test_an_unknown_customer_is_an_error(db: None) -> None:
    with pytest.raises(Customer.DoesNotExist):
        customer_360(404)
