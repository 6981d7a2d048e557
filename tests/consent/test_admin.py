"""The consent admin: topics, subscriptions edited through the service (and so the ledger),
the read-only ledger, suppressions added and lifted through the services, and settings."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from consent.models import (
    ConsentRecord,
    Preference,
    QuietHours,
    RegionPolicy,
    Subscription,
    Suppression,
    Topic,
)
from consent.services import Evidence, address_hash, subscription_set, suppression_add
from consent.signals import confirmation_requested
from customers.models import Customer
from tests.admin_html import cells
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

API = Evidence(source="api", ip_address="203.0.113.9", wording="Tips?")


@pytest.fixture
def topics() -> dict[str, Topic]:
    return {
        "tips": Topic.objects.create(key="tips", name="Tips"),
        "news": Topic.objects.create(key="news", name="News"),
        "receipts": Topic.objects.create(key="receipts", name="Receipts", is_transactional=True),
    }


@pytest.fixture
def customer() -> Customer:
    return CustomerFactory(external_id="user-7", email="ada@example.com", region="US")


@pytest.fixture
def confirmations() -> Any:
    """The double opt-in confirmations requested (sending them is messaging's business)."""
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append({k: v for k, v in kwargs.items() if k != "signal"})

    confirmation_requested.connect(receiver, dispatch_uid="test-admin")
    yield seen
    confirmation_requested.disconnect(dispatch_uid="test-admin")


def _url(name: str, *args: Any) -> str:
    return reverse(f"admin:consent_{name}", args=args)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _html(response: Any) -> str:
    return re.sub(r">\s+<", "><", response.content.decode())


def _staff(client: Client, *codenames: str, username: str = "staff") -> tuple[Client, User]:
    user = User.objects.create_user(username, password="irrelevant", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="consent", codename__in=codenames)
    )
    client.force_login(user)
    return client, user


def _subscribe(customer: Customer, status: str = "opted_in", channel: str = "email") -> None:
    subscription_set(
        customer_id=customer.pk,
        channel=channel,
        topic_keys=["tips"],
        status=status,
        evidence=API,
    )


def _objects(customer: Customer) -> dict[str, Any]:
    _subscribe(customer)
    return {
        "topic": Topic.objects.get(key="tips"),
        "subscription": Subscription.objects.get(customer=customer),
        "consentrecord": ConsentRecord.objects.get(customer=customer),
        "suppression": suppression_add(kind="email", address="gone@example.com", reason="manual"),
        "regionpolicy": RegionPolicy.objects.create(region="DE", mode="opt_in"),
        "quiethours": QuietHours.objects.create(
            channel="sms", starts_at=dt.time(21), ends_at=dt.time(8)
        ),
        "preference": Preference.objects.create(customer=customer, max_marketing=3),
    }


MODELS = [
    "topic",
    "subscription",
    "consentrecord",
    "suppression",
    "regionpolicy",
    "quiethours",
    "preference",
]


# --- Pages render ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_every_changelist_and_change_page_renders_for_a_superuser(
    admin_client: Client, topics: dict[str, Topic], customer: Customer, model: str
) -> None:
    obj = _objects(customer)[model]

    changelist = admin_client.get(_url(f"{model}_changelist"))
    change = admin_client.get(_url(f"{model}_change", obj.pk))

    assert changelist.status_code == 200
    assert obj.pk in [row.pk for row in changelist.context["cl"].result_list]
    assert change.status_code == 200


@pytest.mark.parametrize(
    ("model", "status"),
    [
        ("topic", 200),
        ("subscription", 200),
        ("suppression", 200),
        ("regionpolicy", 200),
        ("quiethours", 200),
        ("consentrecord", 403),
        ("preference", 403),
    ],
)
def test_add_pages_exist_only_where_adding_here_makes_sense(
    admin_client: Client, model: str, status: int
) -> None:
    assert admin_client.get(_url(f"{model}_add")).status_code == status


@pytest.mark.parametrize("model", ["subscription", "consentrecord", "suppression", "preference"])
def test_per_customer_lists_never_count_the_whole_table(
    admin_client: Client, topics: dict[str, Topic], customer: Customer, model: str
) -> None:
    _objects(customer)

    response = admin_client.get(_url(f"{model}_changelist"), {"_facets": "True"})

    assert response.context["cl"].full_result_count is None
    assert response.context["cl"].add_facets is False


# --- Topics -------------------------------------------------------------------------------


def test_a_topic_explains_the_transactional_flag_and_keeps_its_key(
    admin_client: Client, topics: dict[str, Topic]
) -> None:
    tips = topics["tips"]

    page = _html(admin_client.get(_url("topic_change", tips.pk)))
    admin_client.post(
        _url("topic_change", tips.pk),
        {"key": "renamed", "name": "Tips & tricks", "description": "", "is_active": "on"},
    )

    tips.refresh_from_db()
    assert (tips.key, tips.name, tips.is_transactional) == ("tips", "Tips & tricks", False)
    assert "Marking a marketing topic transactional sends it to people who opted out." in page
    assert "sent without marketing consent" in page


def test_topics_cannot_be_deleted(admin_client: Client, topics: dict[str, Topic]) -> None:
    response = admin_client.post(_url("topic_delete", topics["tips"].pk), {"post": "yes"})

    assert response.status_code == 403
    assert Topic.objects.filter(key="tips").exists()


# --- Subscriptions ------------------------------------------------------------------------


def test_an_admin_edit_goes_through_the_service_and_writes_a_ledger_row_with_the_actor(
    client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    # given
    _subscribe(customer, "opted_in")
    subscription = Subscription.objects.get(customer=customer)
    staff, user = _staff(client, "view_subscription", "change_subscription")

    # when
    response = staff.post(
        _url("subscription_change", subscription.pk),
        {"status": "opted_out", "evidence": "asked by phone, ticket 4411"},
    )

    # then
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.status == "opted_out"
    latest = ConsentRecord.objects.filter(customer=customer).order_by("-id").first()
    assert latest is not None
    assert (
        latest.channel,
        latest.topic,
        latest.status,
        latest.source,
        latest.actor,
        latest.wording,
        latest.ip_address,
    ) == ("email", topics["tips"], "opted_out", "admin", user, "asked by phone, ticket 4411", None)
    assert ConsentRecord.objects.filter(customer=customer).count() == 2


def test_adding_a_subscription_goes_through_the_service(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    response = admin_client.post(
        _url("subscription_add"),
        {
            "customer": customer.pk,
            "channel": "sms",
            "topic": topics["news"].pk,
            "status": "opted_in",
            "evidence": "",
        },
    )

    assert response.status_code == 302
    stored = Subscription.objects.get(customer=customer)
    assert (stored.channel, stored.topic, stored.status) == ("sms", topics["news"], "opted_in")
    record = ConsentRecord.objects.get(customer=customer)
    assert (record.source, record.actor, record.status) == (
        "admin",
        User.objects.get(username="admin"),
        "opted_in",
    )


def test_a_second_subscription_for_the_same_channel_and_topic_is_refused(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer)

    response = admin_client.post(
        _url("subscription_add"),
        {
            "customer": customer.pk,
            "channel": "email",
            "topic": topics["tips"].pk,
            "status": "opted_out",
            "evidence": "",
        },
    )

    assert response.context["adminform"].form.non_field_errors() == [
        "Subscription with this Customer, Channel and Topic already exists."
    ]
    assert ConsentRecord.objects.filter(customer=customer).count() == 1


def test_saving_the_same_status_writes_no_ledger_row(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer, "opted_out")
    subscription = Subscription.objects.get(customer=customer)

    response = admin_client.post(
        _url("subscription_change", subscription.pk), {"status": "opted_out", "evidence": ""}
    )

    assert _messages(response)[0] == "No change: already opted out."
    assert ConsentRecord.objects.filter(customer=customer).count() == 1


def test_an_email_opt_in_in_a_double_opt_in_region_awaits_confirmation(
    admin_client: Client,
    topics: dict[str, Topic],
    confirmations: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    RegionPolicy.objects.create(region="DE", mode="opt_in", requires_double_opt_in=True)
    german = CustomerFactory(region="DE")
    _subscribe(german, "opted_out")
    subscription = Subscription.objects.get(customer=german)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            _url("subscription_change", subscription.pk), {"status": "opted_in", "evidence": ""}
        )

    subscription.refresh_from_db()
    assert subscription.status == "pending"
    assert ConsentRecord.objects.filter(customer=german).order_by("-id")[0].status == "pending"
    assert confirmations == [{"customer_id": german.pk, "topic_keys": ["tips"]}]
    assert _messages(response)[0] == (
        "The customer's region requires double opt-in: the subscription awaits confirmation, "
        "and a confirmation email was requested."
    )


def test_subscriptions_cannot_be_deleted(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer)
    subscription = Subscription.objects.get(customer=customer)

    response = admin_client.post(_url("subscription_delete", subscription.pk), {"post": "yes"})

    assert response.status_code == 403
    assert Subscription.objects.filter(pk=subscription.pk).exists()


def test_a_viewer_sees_a_subscription_but_cannot_change_it(
    client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer, "opted_in")
    subscription = Subscription.objects.get(customer=customer)
    viewer, _ = _staff(client, "view_subscription")

    page = viewer.get(_url("subscription_change", subscription.pk))
    response = viewer.post(
        _url("subscription_change", subscription.pk), {"status": "opted_out", "evidence": ""}
    )

    assert page.status_code == 200
    assert 'name="status"' not in _html(page)
    assert response.status_code == 403
    subscription.refresh_from_db()
    assert subscription.status == "opted_in"
    assert ConsentRecord.objects.filter(customer=customer).count() == 1


def test_an_admin_edit_refuses_a_post_without_the_csrf_token(
    topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer, "opted_in")
    subscription = Subscription.objects.get(customer=customer)
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("boss", password="irrelevant"))

    response = client.post(
        _url("subscription_change", subscription.pk), {"status": "opted_out", "evidence": ""}
    )

    assert response.status_code == 403
    assert ConsentRecord.objects.filter(customer=customer).count() == 1


def test_the_subscription_page_shows_its_ledger_including_channel_wide_changes(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer, "opted_in")
    subscription_set(
        customer_id=customer.pk,
        channel="email",
        topic_keys=None,  # every marketing topic: tips and news
        status="opted_out",
        evidence=Evidence(source="unsubscribe_link"),
    )
    subscription = Subscription.objects.get(customer=customer, topic__key="tips")

    html = _html(admin_client.get(_url("subscription_change", subscription.pk)))

    rows = re.findall(
        r"<tr><td class=\"nowrap\">[^<]+</td><td>([^<]+)</td><td>([^<]+)</td>"
        r"<td>([^<]+)</td>",
        html,
    )
    assert rows == [
        ("Tips", "Opted out", "Unsubscribe link"),
        ("Tips", "Opted in", "API"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"channel__exact": "sms"}, ["sms"]),
        ({"status__exact": "opted_out"}, ["other"]),
        ({"q": "user-7"}, ["email", "sms"]),
        ({"q": "ADA@example.com"}, ["email", "sms"]),
        ({"q": "nobody@example.com"}, []),
    ],
)
def test_subscriptions_filter_by_channel_topic_and_status_and_search_by_customer(
    admin_client: Client,
    topics: dict[str, Topic],
    customer: Customer,
    query: dict[str, str],
    expected: list[str],
) -> None:
    _subscribe(customer, "opted_in", "email")
    _subscribe(customer, "opted_in", "sms")
    other = CustomerFactory(email="bo@example.com")
    subscription_set(
        customer_id=other.pk,
        channel="email",
        topic_keys=["news"],
        status="opted_out",
        evidence=API,
    )
    names = {
        Subscription.objects.get(customer=customer, channel="email").pk: "email",
        Subscription.objects.get(customer=customer, channel="sms").pk: "sms",
        Subscription.objects.get(customer=other).pk: "other",
    }

    response = admin_client.get(_url("subscription_changelist"), query)

    assert sorted(names[row.pk] for row in response.context["cl"].result_list) == expected


def test_subscriptions_filter_by_topic(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer)
    subscription_set(
        customer_id=customer.pk,
        channel="email",
        topic_keys=["news"],
        status="opted_in",
        evidence=API,
    )

    response = admin_client.get(
        _url("subscription_changelist"), {"topic__id__exact": topics["news"].pk}
    )

    assert [row.topic.key for row in response.context["cl"].result_list] == ["news"]


# --- The ledger ---------------------------------------------------------------------------


def test_the_ledger_refuses_add_change_and_delete(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    _subscribe(customer)
    record = ConsentRecord.objects.get()
    change_url = _url("consentrecord_change", record.pk)

    add = admin_client.get(_url("consentrecord_add"))
    change = admin_client.post(change_url, {"status": "opted_out"})
    delete = admin_client.post(_url("consentrecord_delete", record.pk), {"post": "yes"})
    bulk = admin_client.post(
        _url("consentrecord_changelist"),
        {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"},
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk.status_code == 200  # not an action here: "no action selected"
    record.refresh_from_db()
    assert record.status == "opted_in"
    assert ConsentRecord.objects.count() == 1
    page = _html(admin_client.get(change_url))
    assert 'name="_save"' not in page
    assert (
        "delete_selected" not in admin_client.get(_url("consentrecord_changelist")).content.decode()
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"source__exact": "admin"}, ["admin"]),
        ({"channel__exact": "sms"}, ["sms"]),
        ({"source__exact": "api"}, ["api"]),
    ],
)
def test_the_ledger_filters_by_source_and_channel(
    admin_client: Client,
    topics: dict[str, Topic],
    customer: Customer,
    query: dict[str, str],
    expected: list[str],
) -> None:
    _subscribe(customer, "opted_in", "email")
    subscription_set(
        customer_id=customer.pk,
        channel="sms",
        topic_keys=["tips"],
        status="opted_out",
        evidence=Evidence(source="sms_keyword"),
    )
    subscription_set(
        customer_id=customer.pk,
        channel="email",
        topic_keys=["news"],
        status="opted_in",
        evidence=Evidence(source="admin"),
    )
    names = {"api": "api", "sms_keyword": "sms", "admin": "admin"}

    response = admin_client.get(_url("consentrecord_changelist"), query)

    assert [names[row.source] for row in response.context["cl"].result_list] == expected


def test_a_ledger_row_for_every_topic_says_so(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    ConsentRecord.objects.create(
        customer=customer, channel="sms", topic=None, status="opted_out", source="sms_keyword"
    )

    html = _html(admin_client.get(_url("consentrecord_changelist")))

    assert ("topic_label", "every marketing topic") in cells(html)


# --- Suppressions ---------------------------------------------------------------------------


def _suppression_form(**overrides: str) -> dict[str, str]:
    data = {"kind": "email", "address": " Ada@Example.com ", "reason": "manual", "note": "asked"}
    data.update(overrides)
    return data


def test_adding_a_suppression_goes_through_the_service_with_the_user(
    client: Client,
) -> None:
    staff, user = _staff(client, "view_suppression", "add_suppression")

    response = staff.post(_url("suppression_add"), _suppression_form())

    assert response.status_code == 302
    stored = Suppression.objects.get()
    assert (stored.kind, stored.address, stored.reason, stored.note, stored.created_by) == (
        "email",
        "ada@example.com",
        "manual",
        "asked",
        user,
    )
    assert stored.address_hash == address_hash("email", "ada@example.com")


def test_adding_an_address_already_suppressed_keeps_one_row_and_says_so(
    admin_client: Client,
) -> None:
    suppression_add(kind="email", address="ada@example.com", reason="unsubscribe")

    response = admin_client.post(_url("suppression_add"), _suppression_form(reason="complaint"))

    stored = Suppression.objects.get()
    assert stored.reason == "complaint"  # a complaint outranks an unsubscribe
    assert _messages(response)[0].startswith("Already suppressed (since ")
    assert _messages(response)[0].endswith("); its reason is now “Complaint”.")


def test_an_erased_customer_cannot_be_picked_as_a_reason(admin_client: Client) -> None:
    response = admin_client.post(_url("suppression_add"), _suppression_form(reason="erased"))

    assert list(response.context["adminform"].form.errors) == ["reason"]
    assert Suppression.objects.count() == 0


def test_the_suppression_list_shows_erased_for_a_blank_address(admin_client: Client) -> None:
    kept = suppression_add(kind="email", address="kept@example.com", reason="manual")
    erased = suppression_add(kind="email", address="erased@example.com", reason="erased")
    Suppression.objects.filter(pk=erased.pk).update(address="")

    html = _html(admin_client.get(_url("suppression_changelist")))

    kept_url = _url("suppression_change", kept.pk)
    erased_url = _url("suppression_change", erased.pk)
    assert ("address_label", f'<a href="{kept_url}">kept@example.com</a>') in cells(html)
    assert ("address_label", f'<a href="{erased_url}">erased</a>') in cells(html)
    assert ("reason", "Erased customer") in cells(html)


def test_suppressions_are_found_by_exact_address_even_once_erased(admin_client: Client) -> None:
    erased = suppression_add(kind="email", address="Gone@example.com", reason="hard_bounce")
    Suppression.objects.filter(pk=erased.pk).update(address="")
    suppression_add(kind="email", address="other@example.com", reason="manual")

    response = admin_client.get(_url("suppression_changelist"), {"q": "gone@EXAMPLE.com"})

    assert list(response.context["cl"].result_list) == [erased]


def test_suppressions_are_not_edited_or_deleted_one_by_one(admin_client: Client) -> None:
    suppression = suppression_add(kind="email", address="ada@example.com", reason="manual")

    change = admin_client.post(_url("suppression_change", suppression.pk), {"reason": "complaint"})
    delete = admin_client.post(_url("suppression_delete", suppression.pk), {"post": "yes"})

    assert (change.status_code, delete.status_code) == (403, 403)
    suppression.refresh_from_db()
    assert suppression.reason == "manual"


def _lift(client: Client, *rows: Suppression) -> Any:
    return client.post(
        _url("suppression_changelist"),
        {"action": "lift", "_selected_action": [row.pk for row in rows]},
    )


def test_lift_removes_unsubscribes_manual_and_hard_bounces_but_never_complaints_or_holds(
    admin_client: Client,
) -> None:
    # given
    rows = {
        reason: suppression_add(kind="email", address=f"{reason}@example.com", reason=reason)
        for reason in ("unsubscribe", "manual", "hard_bounce", "complaint", "legal_hold", "erased")
    }
    blank = suppression_add(kind="phone", address="+14155550100", reason="hard_bounce")
    Suppression.objects.filter(pk=blank.pk).update(address="")

    # when
    response = _lift(admin_client, *rows.values(), blank)

    # then
    remaining = sorted(Suppression.objects.values_list("reason", "address"))
    assert remaining == [
        ("complaint", "complaint@example.com"),
        ("erased", "erased@example.com"),
        ("hard_bounce", ""),
        ("legal_hold", "legal_hold@example.com"),
    ]
    assert _messages(response) == [
        "3 suppressions lifted. 3 skipped: complaints, legal holds and erased customers are "
        "never lifted here. 1 skipped: its address was erased."
    ]
    logged = LogEntry.objects.filter(action_flag=DELETION).values_list("object_repr", flat=True)
    assert sorted(logged) == [
        "email hard_bounce@example.com: hard_bounce",
        "email manual@example.com: manual",
        "email unsubscribe@example.com: unsubscribe",
    ]


def test_lift_says_when_nothing_was_lifted(admin_client: Client) -> None:
    held = suppression_add(kind="email", address="held@example.com", reason="legal_hold")

    response = _lift(admin_client, held)

    assert Suppression.objects.filter(pk=held.pk).exists()
    assert _messages(response) == [
        "0 suppressions lifted. 1 skipped: complaints, legal holds and erased customers are "
        "never lifted here."
    ]


def test_lift_needs_the_delete_permission(client: Client) -> None:
    manual = suppression_add(kind="email", address="ada@example.com", reason="manual")
    viewer, _ = _staff(client, "view_suppression")

    page = viewer.get(_url("suppression_changelist"))
    response = _lift(viewer, manual)

    assert 'value="lift"' not in page.content.decode()
    assert response.status_code == 200  # the unknown action is refused as "no action selected"
    assert Suppression.objects.filter(pk=manual.pk).exists()


def test_staff_with_the_delete_permission_may_lift(client: Client) -> None:
    manual = suppression_add(kind="email", address="ada@example.com", reason="manual")
    staff, _ = _staff(client, "view_suppression", "delete_suppression")

    response = _lift(staff, manual)

    assert response.status_code == 302
    assert not Suppression.objects.filter(pk=manual.pk).exists()


def test_lift_refuses_a_post_without_the_csrf_token() -> None:
    manual = suppression_add(kind="email", address="ada@example.com", reason="manual")
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("boss", password="irrelevant"))

    response = _lift(client, manual)

    assert response.status_code == 403
    assert Suppression.objects.filter(pk=manual.pk).exists()


# --- Region policies, quiet hours, preferences ------------------------------------------------


def test_a_region_policy_is_stored_upper_case_and_explained(admin_client: Client) -> None:
    page = _html(admin_client.get(_url("regionpolicy_add")))
    response = admin_client.post(
        _url("regionpolicy_add"),
        {"region": " de ", "mode": "opt_in", "requires_double_opt_in": "on"},
    )

    assert response.status_code == 302
    policy = RegionPolicy.objects.get()
    assert (policy.region, policy.mode, policy.requires_double_opt_in) == ("DE", "opt_in", True)
    assert "A region without a row follows the default mode" in page
    assert "As stored on customers, e.g. DE, FR, US, EU." in page


def test_quiet_hours_are_shown_as_a_window_and_explained(admin_client: Client) -> None:
    page = _html(admin_client.get(_url("quiethours_add")))
    admin_client.post(
        _url("quiethours_add"),
        {"channel": "sms", "starts_at": "21:00", "ends_at": "08:00", "is_active": "on"},
    )

    html = _html(admin_client.get(_url("quiethours_changelist")))

    assert ("window", "21:00 to 08:00 (over midnight)") in cells(html)
    assert "in each customer's own time zone" in page
    assert "Local time the window opens, e.g. 21:00." in page


def test_a_quiet_window_that_ends_when_it_starts_is_refused(admin_client: Client) -> None:
    response = admin_client.post(
        _url("quiethours_add"),
        {"channel": "sms", "starts_at": "21:00", "ends_at": "21:00", "is_active": "on"},
    )

    assert response.context["adminform"].form.errors == {
        "ends_at": ["The window must end at another time than it starts."]
    }
    assert QuietHours.objects.count() == 0


def test_preferences_are_read_only(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    preference = Preference.objects.create(customer=customer, max_marketing=3)
    change_url = _url("preference_change", preference.pk)

    change = admin_client.post(change_url, {"max_marketing": "9"})
    delete = admin_client.post(_url("preference_delete", preference.pk), {"post": "yes"})

    assert (change.status_code, delete.status_code) == (403, 403)
    preference.refresh_from_db()
    assert preference.max_marketing == 3
    customer_url = reverse("admin:customers_customer_change", args=(customer.pk,))
    assert f'<a href="{customer_url}">user-7</a>' in _html(admin_client.get(change_url))
