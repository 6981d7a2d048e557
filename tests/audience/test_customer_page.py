"""The customer page as a 360 view: account, consent matrix, milestones, journeys, messages with
the policy's reasons, and events — each section's content for a seeded customer, clear empty
states, and a fixed number of queries however long the customer's history is."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from audience.selectors import ENROLLMENTS_SHOWN, MESSAGES_SHOWN
from consent.models import Preference, RegionPolicy, Topic
from consent.services import Evidence, subscription_set
from customers.models import Customer
from journeys.models import Enrollment, EnrollmentState, StepRun
from messaging import reasons
from messaging.admin.messages import why_reason
from messaging.explain import reason_sentence
from messaging.models import Message, TemplateVersion
from tests.audience.conftest import NOW, Seeded
from tests.factories import CustomerFactory, DeviceFactory, EventFactory

pytestmark = pytest.mark.django_db


def _page(client: Client, customer: Customer) -> str:
    response = client.get(reverse("admin:customers_customer_change", args=(customer.pk,)))
    assert response.status_code == 200
    # Indentation between tags goes; a space inside a line is part of the text.
    return re.sub(r">\s*\n\s*<", "><", response.content.decode())


def _section(html: str, title: str) -> str:
    """The body of the fieldset headed ``title``."""
    found = re.search(
        rf'<h2 id="fieldset-0-\d+-heading" class="[^"]*">{title}</h2>(.*?)</fieldset>',
        html,
        re.DOTALL,
    )
    assert found is not None, f"no section {title!r}"
    return found[1]


def _headings(html: str) -> list[str]:
    return re.findall(r'<h2 id="fieldset-0-\d+-heading" class="[^"]*">([^<]+)</h2>', html)


def _readonly(html: str, field: str) -> tuple[str, str]:
    """The label and the shown value of the readonly field ``field``."""
    found = re.search(
        rf'<div class="[^"]*\bfield-{field}\b[^"]*"[^>]*>.*?<label[^>]*>([^<]*)</label>'
        r'.*?<div class="readonly\b[^"]*">(.*?)</div>',
        html,
        re.DOTALL,
    )
    assert found is not None, f"no field {field!r}"
    return found[1], found[2]


def _field_at(html: str, field: str) -> int:
    """Where the row of the field ``field`` starts."""
    found = re.search(rf'class="[^"]*\bfield-{field}\b[^"]*"', html)
    assert found is not None, f"no field {field!r}"
    return found.start()


def _consent_rows(section: str) -> list[list[str]]:
    """Each row of the consent matrix as its cells' text, header cell first."""
    table = re.search(r'<table class="audience-consent-matrix">(.*?)</table>', section, re.DOTALL)
    assert table is not None
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table[1], re.DOTALL)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
        ]
        for row in rows
    ]


# --- Layout ---------------------------------------------------------------------------------


def test_the_sections_come_in_order_with_milestones_where_they_were(
    admin_client: Client, seeded: Seeded
) -> None:
    html = _page(admin_client, seeded.customer)

    assert _headings(html) == [
        "Profile",
        "Lifecycle",
        "Milestones",
        "Consent",
        "Journeys",
        "Messages",
        "Recent events",
    ]
    assert re.search(r'<h2 id="fieldset-0-3-heading" class="[^"]*">Milestones</h2>', html)


def test_the_account_is_linked_beside_the_account_field(
    admin_client: Client, seeded: Seeded
) -> None:
    html = _page(admin_client, seeded.customer)

    account_id = seeded.customer.account_id
    assert _readonly(html, "account_link") == (
        "Account page",
        f'<a href="/admin/customers/account/{account_id}/change/">Acme Analytics</a> '
        '<span class="quiet">(acme; plan enterprise; active)</span>',
    )
    assert _field_at(html, "account") < _field_at(html, "account_link") < _field_at(html, "status")


# --- Consent --------------------------------------------------------------------------------


def test_the_consent_matrix_reads_every_active_topic_on_every_channel(
    admin_client: Client, seeded: Seeded
) -> None:
    section = _section(_page(admin_client, seeded.customer), "Consent")

    transactional = "Transactional sent without marketing consent"
    assert _consent_rows(section) == [
        ["Topic", "Email", "SMS", "Push", "In-app"],
        [
            "Address",
            "ada@acme.example",
            "+4915112345678 Suppressed: hard bounce since 2026-03-04: carrier: unknown",
            "ios tok-ios-ada",
            "in the product",
        ],
        [
            "Tips",
            "Subscribed opted in",
            "Subscribed opted in",
            "Unknown → unsubscribed opt-in region",
            "Unknown → subscribed in-app messages need no opt-in",
        ],
        ["Receipts (transactional)", *[transactional] * 4],
    ]
    assert "Old news" not in section
    assert (
        "<p>Region <strong>DE</strong>: Opt-in (marketing only after explicit consent). "
        "A status the customer never set (unknown) is read by this policy.</p>"
    ) in section


OPTED_IN = (
    '<td class="audience-consent-subscribed">Subscribed <span class="quiet">opted in</span></td>'
)


def test_each_cell_carries_its_effective_state_as_a_class(
    admin_client: Client, seeded: Seeded
) -> None:
    section = _section(_page(admin_client, seeded.customer), "Consent")

    assert (
        '<tr><th scope="row">Tips</th>'
        f"{OPTED_IN}{OPTED_IN}"
        '<td class="audience-consent-unsubscribed">Unknown → unsubscribed '
        '<span class="quiet">opt-in region</span></td>'
        '<td class="audience-consent-subscribed">Unknown → subscribed '
        '<span class="quiet">in-app messages need no opt-in</span></td></tr>'
    ) in section
    assert (
        '<td><div>+4915112345678 <strong class="audience-suppressed">Suppressed: hard bounce'
        '</strong> <span class="quiet">since 2026-03-04: carrier: unknown</span></div></td>'
    ) in section


def test_unknown_reads_as_subscribed_in_an_opt_out_region_except_email_under_double_opt_in(
    admin_client: Client, frozen: None
) -> None:
    # given
    RegionPolicy.objects.create(region="FR", mode="opt_out", requires_double_opt_in=True)
    Topic.objects.create(key="tips", name="Tips")
    customer = CustomerFactory(email="zoe@example.fr", phone="+33612345678", region="FR")
    subscription_set(
        customer_id=customer.pk,
        channel="push",
        topic_keys=["tips"],
        status="opted_in",
        evidence=Evidence(source="api"),
    )
    subscription_set(
        customer_id=customer.pk,
        channel="in_app",
        topic_keys=["tips"],
        status="opted_out",
        evidence=Evidence(source="api"),
    )

    # when
    section = _section(_page(admin_client, customer), "Consent")

    # then
    assert _consent_rows(section)[2] == [
        "Tips",
        "Unknown → unsubscribed double opt-in region: email needs a confirmed opt-in",
        "Unknown → subscribed opt-out region",
        "Subscribed opted in",
        "Unsubscribed opted out",
    ]
    assert _consent_rows(section)[1] == [
        "Address",
        "zoe@example.fr",
        "+33612345678",
        "no active device",
        "in the product",
    ]
    assert (
        "<p>Region <strong>FR</strong>: Opt-out (marketing until the customer opts out); an "
        "email opt-in counts once confirmed (double opt-in). A status the customer never set "
        "(unknown) is read by this policy.</p>"
    ) in section


def test_a_pending_email_opt_in_reads_as_unsubscribed_until_confirmed(
    admin_client: Client, frozen: None
) -> None:
    RegionPolicy.objects.create(region="AT", mode="opt_in", requires_double_opt_in=True)
    Topic.objects.create(key="tips", name="Tips")
    customer = CustomerFactory(email="ida@example.at", region="AT")
    subscription_set(
        customer_id=customer.pk,
        channel="email",
        topic_keys=["tips"],
        status="opted_in",
        evidence=Evidence(source="api"),
    )

    section = _section(_page(admin_client, customer), "Consent")

    assert _consent_rows(section)[2][1] == "Unsubscribed awaiting double opt-in confirmation"


def test_the_preference_centre_settings_and_the_ledger_links_are_shown(
    admin_client: Client, seeded: Seeded
) -> None:
    # given
    Preference.objects.filter(customer=seeded.customer).update(
        paused_until=NOW + dt.timedelta(days=3), period_days=1
    )

    # when
    section = _section(_page(admin_client, seeded.customer), "Consent")

    # then
    pk = seeded.customer.pk
    assert (
        '<table class="audience-preference"><caption>Preference centre</caption><tbody>'
        '<tr><th scope="row">Marketing limit</th><td>At most 3 per 1 day</td></tr>'
        '<tr><th scope="row">Paused</th><td>Until 2026-03-07 12:00 UTC</td></tr>'
        '<tr><th scope="row">Last changed</th><td>2026-03-04 12:00 UTC</td></tr>'
        "</tbody></table>"
    ) in section
    assert (
        f'<p><a href="/admin/consent/consentrecord/?customer__id__exact={pk}">Consent history '
        f'(the ledger)</a> · <a href="/admin/consent/subscription/?customer__id__exact={pk}">'
        "Subscriptions</a></p>"
    ) in section


def test_the_consent_history_link_lists_that_customers_ledger(
    admin_client: Client, seeded: Seeded
) -> None:
    other = CustomerFactory()
    subscription_set(
        customer_id=other.pk,
        channel="sms",
        topic_keys=["tips"],
        status="opted_out",
        evidence=Evidence(source="api"),
    )
    url = f"{reverse('admin:consent_consentrecord_changelist')}"

    response = admin_client.get(url, {"customer__id__exact": seeded.customer.pk})

    listed = [(r.customer_id, r.channel) for r in response.context["cl"].result_list]
    assert sorted(listed) == [(seeded.customer.pk, "email"), (seeded.customer.pk, "sms")]


# --- Milestones -----------------------------------------------------------------------------


def test_a_milestone_shows_a_bar_with_done_of_total_its_state_and_deadline(
    admin_client: Client, seeded: Seeded
) -> None:
    section = _section(_page(admin_client, seeded.customer), "Milestones")

    assert (
        f'<tr><td><a href="/admin/milestones/milestonedefinition/{seeded.milestone.pk}/change/">'
        "Activated</a></td><td>v1</td><td>In progress</td>"
        '<td><progress value="1" max="3" title="33%">33%</progress> 1/3</td>'
        "<td>2026-03-01 12:00</td><td>2026-03-15 12:00</td><td>—</td></tr>"
    ) in section


# --- Journeys -------------------------------------------------------------------------------


def test_an_enrollment_shows_its_journey_version_step_next_run_and_last_step_runs(
    admin_client: Client, seeded: Seeded
) -> None:
    section = _section(_page(admin_client, seeded.customer), "Journeys")

    enrollment, journey, message = seeded.enrollment, seeded.journey, seeded.journey_sms
    assert (
        "<tbody><tr>"
        f'<td><a href="/admin/journeys/journey/{journey.pk}/change/">Setup nudge</a> '
        f'<a class="quiet" href="/admin/journeys/enrollment/{enrollment.pk}/change/">'
        f"enrollment {enrollment.pk}</a></td>"
        "<td>v1</td><td>Waiting</td>"
        '<td>pause <span class="quiet">(wait)</span></td>'
        "<td>2026-03-06 12:00</td><td>—</td><td>2026-03-04 12:00</td>"
        '<td><ol class="audience-runs"><li>2026-03-04 12:00 nudge: done, '
        f'<a href="/admin/messaging/message/{message.pk}/change/">message {message.pk}</a> '
        "(suppressed)</li></ol></td>"
        "</tr></tbody>"
    ) in section


def test_a_variant_and_a_holdout_are_named(admin_client: Client, seeded: Seeded) -> None:
    # given
    Enrollment.objects.filter(pk=seeded.enrollment.pk).update(variants={"ab": "B"})
    held = Enrollment.objects.create(
        version_id=seeded.enrollment.version_id,
        journey=seeded.journey,
        customer=seeded.customer,
        entry_key="held",
        state=EnrollmentState.HOLDOUT,
        entered_at=NOW + dt.timedelta(hours=1),
        finished_at=NOW + dt.timedelta(hours=1),
    )

    # when
    section = _section(_page(admin_client, seeded.customer), "Journeys")

    # then
    assert (
        f"enrollment {held.pk}</a></td><td>v1</td><td>Held out (control)</td><td>—</td>"
        "<td>—</td><td>Held out (control group)</td><td>2026-03-04 13:00</td><td>—</td>"
    ) in section
    assert "<td>2026-03-06 12:00</td><td>ab: B</td>" in section
    assert section.index(f"enrollment {held.pk}<") < section.index(
        f"enrollment {seeded.enrollment.pk}<"
    )


# --- Messages -------------------------------------------------------------------------------


def test_messages_are_newest_first_with_the_policys_reason_for_each_non_send(
    admin_client: Client, seeded: Seeded
) -> None:
    section = _section(_page(admin_client, seeded.customer), "Messages")

    rows = re.findall(
        r'<tr class="audience-message-(\w+)"><td>([^<]+)</td><td><a href="([^"]+)">', section
    )
    assert rows == [
        ("suppressed", "2026-03-04 12:02", f"/admin/messaging/message/{seeded.push.pk}/change/"),
        ("sent", "2026-03-04 12:01", f"/admin/messaging/message/{seeded.sent.pk}/change/"),
        (
            "suppressed",
            "2026-03-04 12:00",
            f"/admin/messaging/message/{seeded.journey_sms.pk}/change/",
        ),
    ]
    no_consent = reason_sentence(reasons.NO_CONSENT, "unknown (opt_in region)")
    assert no_consent == (
        "No consent for this topic on this channel (status: never asked; an opt-in region: "
        "marketing only after an explicit opt-in)."
    )
    assert (
        '<td>None chosen <span class="quiet">(asked: Push)</span></td><td>Tips</td>'
        '<td><a href="/admin/messaging/template/'
    ) in section
    assert (
        "<td>—</td><td>Suppressed</td><td>Not sent: the policy stopped it. "
        f'<strong class="audience-reason">{escape(no_consent)}</strong></td></tr>'
    ) in section


def test_a_suppressed_journey_message_names_its_journey_template_and_reason(
    admin_client: Client, seeded: Seeded
) -> None:
    section = _section(_page(admin_client, seeded.customer), "Messages")

    message = seeded.journey_sms
    template_id = TemplateVersion.objects.get(pk=message.templates["sms"]).template_id
    assert (
        f'<tr class="audience-message-suppressed"><td>2026-03-04 12:00</td>'
        f'<td><a href="/admin/messaging/message/{message.pk}/change/">message {message.pk}</a></td>'
        '<td>None chosen <span class="quiet">(asked: SMS)</span></td><td>Tips</td>'
        f'<td><a href="/admin/messaging/template/{template_id}/change/">setup-help</a> v1</td>'
        "<td>setup-nudge</td><td>Suppressed</td><td>Not sent: the policy stopped it. "
        '<strong class="audience-reason">The address is on the suppression list (a bounce, '
        "complaint, unsubscribe, manual or legal hold), so nothing is sent to it.</strong>"
        "</td></tr>"
    ) in section
    # The same sentence as the message's own page.
    assert why_reason(message) in section


def test_a_sent_message_shows_its_channel_and_template_without_a_reason(
    admin_client: Client, seeded: Seeded
) -> None:
    section = _section(_page(admin_client, seeded.customer), "Messages")

    message = seeded.sent
    assert message.template_version is not None
    assert (
        f'<tr class="audience-message-sent"><td>2026-03-04 12:01</td>'
        f'<td><a href="/admin/messaging/message/{message.pk}/change/">message {message.pk}</a></td>'
        "<td>Email</td><td>Tips</td>"
        f'<td><a href="/admin/messaging/template/{message.template_version.template_id}/change/">'
        "tips-email</a> v1</td>"
        "<td>—</td><td>Sent</td><td>Sent: the provider accepted it.</td></tr>"
    ) in section


def test_a_deferred_message_says_when_it_is_weighed_again(
    admin_client: Client, seeded: Seeded
) -> None:
    Message.objects.filter(pk=seeded.push.pk).update(
        status="deferred",
        reason=reasons.QUIET_HOURS_DEFERRED,
        channel="push",
        send_after=NOW + dt.timedelta(hours=8),
        explanation=[{"channel": "push", "reason": "", "detail": ""}],
    )

    section = _section(_page(admin_client, seeded.customer), "Messages")

    assert (
        "<td>Deferred</td><td>Held back for now; the policy weighs it again later. "
        '<strong class="audience-reason">Deferred by quiet hours in the customer&#x27;s time '
        "zone. It is weighed again at 2026-03-04 20:00 UTC.</strong></td>"
    ) in section


# --- Events ---------------------------------------------------------------------------------


def test_the_events_timeline_is_kept_newest_first(admin_client: Client, seeded: Seeded) -> None:
    section = _section(_page(admin_client, seeded.customer), "Recent events")

    names = re.findall(r'<td class="nowrap">([^<]+)</td><td>Track</td><td>([^<]+)</td>', section)
    assert names == [
        ("2026-03-04 12:00:00", "Subscribed"),
        ("2026-03-04 12:00:00", "Subscribed"),
        ("2026-03-04 11:00:00", "Report Created"),
        ("2026-03-01 12:00:00", "Signed Up"),
    ]


# --- Empty states ---------------------------------------------------------------------------


def test_a_customer_without_history_gets_clear_empty_states(
    admin_client: Client, frozen: None
) -> None:
    customer = CustomerFactory(email="", phone="", region="", account=None)

    html = _page(admin_client, customer)

    assert _readonly(html, "account_link") == (
        "Account page",
        '<span class="quiet">No account.</span>',
    )
    consent = _section(html, "Consent")
    assert _consent_rows(consent) == [
        ["Topic", "Email", "SMS", "Push", "In-app"],
        ["Address", "no email address", "no phone number", "no active device", "in the product"],
        ["No active topics."],
    ]
    assert (
        "<p>Region <strong>(none)</strong>: Opt-out (marketing until the customer opts out)."
        in (consent)
    )
    assert (
        '<tr><th scope="row">Marketing limit</th><td>No limit</td></tr>'
        '<tr><th scope="row">Paused</th><td>No</td></tr>'
        '<tr><th scope="row">Last changed</th><td>Never: the defaults apply</td></tr>'
    ) in consent
    assert "<p>No milestones started yet.</p>" in _section(html, "Milestones")
    assert '<p class="quiet">Not in any journey yet.</p>' in _section(html, "Journeys")
    assert '<p class="quiet">No messages yet.</p>' in _section(html, "Messages")
    assert '<p class="quiet">No events yet.</p>' in _section(html, "Recent events")


# --- Bounds and queries ---------------------------------------------------------------------


def _longer_history(seeded: Seeded, extra: int) -> None:
    """``extra`` more of everything the page lists: topics, devices, events, enrollments with
    step runs, and messages."""
    customer = seeded.customer
    tips = Topic.objects.get(key="tips")
    for n in range(extra):
        Topic.objects.create(key=f"topic-{n}", name=f"Topic {n}")
        DeviceFactory(customer=customer, platform="android", token=f"tok-extra-{n}")
        EventFactory(customer=customer, name=f"Extra {n}", occurred_at=NOW - dt.timedelta(days=9))
        enrollment = Enrollment.objects.create(
            version_id=seeded.enrollment.version_id,
            journey=seeded.journey,
            customer=customer,
            entry_key=f"extra-{n}",
            state=EnrollmentState.COMPLETED,
            entered_at=NOW - dt.timedelta(days=10, minutes=n),
        )
        for step in ("nudge", "pause", "done"):
            StepRun.objects.create(
                enrollment=enrollment,
                step_key=step,
                idempotency_key=f"extra-{n}-{step}",
                status="done",
                at=NOW - dt.timedelta(days=10),
            )
        Message.objects.create(
            idempotency_key=f"extra-{n}",
            customer=customer,
            channels=["email"],
            channel="email",
            topic=tips,
            status="sent",
            created_at=NOW - dt.timedelta(days=10, minutes=n),
        )


def _page_queries(client: Client, customer: Customer) -> int:
    with CaptureQueriesContext(connection) as captured:
        _page(client, customer)
    return len(captured.captured_queries)


def test_the_page_costs_the_same_queries_however_long_the_history(
    admin_client: Client, seeded: Seeded, django_assert_max_num_queries: Any
) -> None:
    # given
    _page(admin_client, seeded.customer)  # a warm session and caches, as in use
    short = _page_queries(admin_client, seeded.customer)
    _longer_history(seeded, MESSAGES_SHOWN + 5)

    # when
    with django_assert_max_num_queries(19):
        html = _page(admin_client, seeded.customer)

    # then
    assert _page_queries(admin_client, seeded.customer) == short == 19
    journeys, messages = _section(html, "Journeys"), _section(html, "Messages")
    assert journeys.count("<tr><td><a href=") == ENROLLMENTS_SHOWN
    assert messages.count('<tr class="audience-message-') == MESSAGES_SHOWN
    pk = seeded.customer.pk
    assert (
        f'<p><a href="/admin/journeys/enrollment/?customer__id__exact={pk}">'
        "All enrollments of this customer</a></p>"
    ) in journeys
    assert (
        f'<p><a href="/admin/messaging/message/?customer__id__exact={pk}">'
        "All messages of this customer</a></p>"
    ) in messages


def test_the_gdpr_actions_stay_on_the_customer_list(admin_client: Client, seeded: Seeded) -> None:
    response = admin_client.get(reverse("admin:customers_customer_changelist"))

    html = response.content.decode()
    assert 'value="gdpr_export"' in html
    assert 'value="gdpr_erase"' in html


# --- Who sees what --------------------------------------------------------------------------


def _staff(client: Client, *permissions: str) -> Client:
    user = User.objects.create_user("support", password="irrelevant", is_staff=True)
    found = Q(content_type__app_label="customers")
    for permission in permissions:
        app_label, codename = permission.split(".")
        found |= Q(content_type__app_label=app_label, codename=codename)
    user.user_permissions.set(Permission.objects.filter(found))
    client.force_login(user)
    return client


def test_staff_without_the_other_apps_view_permissions_see_only_the_customer_sections(
    client: Client, seeded: Seeded
) -> None:
    html = _page(_staff(client), seeded.customer)

    assert _headings(html) == ["Profile", "Lifecycle", "Milestones", "Recent events"]
    assert "audience-consent" not in html
    assert "audience-messages" not in html


def test_staff_who_may_view_consent_journeys_and_messages_see_those_sections(
    client: Client, seeded: Seeded
) -> None:
    staff = _staff(
        client, "consent.view_subscription", "journeys.view_enrollment", "messaging.view_message"
    )

    html = _page(staff, seeded.customer)

    assert _headings(html)[3:6] == ["Consent", "Journeys", "Messages"]


def test_names_from_other_apps_are_escaped(admin_client: Client, seeded: Seeded) -> None:
    Topic.objects.filter(key="tips").update(name="<script>alert(1)</script>")

    html = _page(admin_client, seeded.customer)

    assert "<script>alert(1)</script>" not in html
    assert '<th scope="row">&lt;script&gt;alert(1)&lt;/script&gt;</th>' in html
