"""The messaging admin: the template editor with its preview and buttons, frequency caps, and
the read-only send log with its "why" panel and retry action."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from consent.models import Topic
from consent.services import Evidence, subscription_set
from customers.models import Customer
from messaging import reasons
from messaging.explain import reason_sentence
from messaging.models import FrequencyCap, Message, Template, TemplateStatus, TemplateVersion
from messaging.rendering import RenderError, render
from messaging.services import SendRequest, messages_request
from messaging.templating import SAMPLE_CONTEXT, template_save
from tests.admin_html import cells, has_cells, readonly
from tests.factories import CustomerFactory
from tests.messaging.conftest import CHANNEL_FIELDS, EMAIL_FIELDS

pytestmark = pytest.mark.django_db

Make = Callable[..., Template]
BUTTONS = ("activate", "archive", "send_test")


# --- Helpers --------------------------------------------------------------------------------


def _url(name: str, *args: Any) -> str:
    return reverse(f"admin:messaging_{name}", args=args)


def _button(template: Template, name: str) -> str:
    return _url(f"template_{name}", template.pk)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _html(response: Any) -> str:
    """The page with the whitespace between tags removed."""
    return re.sub(r">\s+<", "><", response.content.decode())


def _staff(client: Client, *codenames: str) -> Client:
    user = User.objects.create_user("staff", password="irrelevant", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="messaging", codename__in=codenames)
    )
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(client: Client) -> Client:
    """Staff who may view templates and messages but change nothing."""
    return _staff(client, "view_template", "view_message", "view_frequencycap")


def _ask(customer: Customer, *templates: str, key: str = "k1") -> Message:
    (pk,) = messages_request([SendRequest(key, customer.pk, templates)])
    return Message.objects.get(pk=pk)


def _failed(topic: Topic, customer: Customer | None, reason: str, key: str) -> Message:
    return Message.objects.create(
        idempotency_key=key,
        customer=customer,
        channels=["email"],
        channel="email",
        topic=topic,
        status="failed",
        reason=reason,
        error="timeout",
        attempts=5,
    )


def _opt_out(customer: Customer, channel: str) -> None:
    subscription_set(
        customer_id=customer.pk,
        channel=channel,
        topic_keys=["tips"],
        status="opted_out",
        evidence=Evidence(source="api"),
    )


def _template_form(template: Template, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": template.name,
        "topic": template.topic_id,
        "default_locale": template.default_locale,
        "variants": '{"en": {"body": "Hi {{ customer.first_name }}"}}',
    }
    data.update(overrides)
    return data


# --- Pages render ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["template", "frequencycap", "message"])
def test_every_changelist_and_change_page_renders_for_a_superuser(
    admin_client: Client, templates: dict[str, Template], customer: Customer, model: str
) -> None:
    objects = {
        "template": templates["email"],
        "frequencycap": FrequencyCap.objects.create(
            name="3 a week", scope="marketing", limit=3, window=dt.timedelta(days=7)
        ),
        "message": _ask(customer, "tips-email"),
    }
    obj = objects[model]

    changelist = admin_client.get(_url(f"{model}_changelist"))
    change = admin_client.get(_url(f"{model}_change", obj.pk))

    assert changelist.status_code == 200
    assert obj.pk in [row.pk for row in changelist.context["cl"].result_list]
    assert change.status_code == 200


@pytest.mark.parametrize("model", ["template", "frequencycap"])
def test_the_add_pages_render(admin_client: Client, model: str) -> None:
    assert admin_client.get(_url(f"{model}_add")).status_code == 200


# --- Template editor ------------------------------------------------------------------------


def test_adding_a_template_saves_a_draft_through_the_service(
    admin_client: Client, topics: dict[str, Topic]
) -> None:
    response = admin_client.post(
        _url("template_add"),
        {
            "key": "tips-sms",
            "name": "Tips by SMS",
            "channel": "sms",
            "topic": topics["tips"].pk,
            "default_locale": "en",
            "variants": '{"en": {"body": "Hi {{ customer.first_name }}"}}',
        },
    )

    assert response.status_code == 302
    template = Template.objects.get(key="tips-sms")
    assert (template.name, template.channel, template.status, template.active_version) == (
        "Tips by SMS",
        "sms",
        TemplateStatus.DRAFT,
        None,
    )
    assert template.variants == {"en": {"body": "Hi {{ customer.first_name }}"}}
    assert _messages(response)[0] == "Saved as a draft: nothing is sent with it until Activate."


@pytest.mark.parametrize(
    ("variants", "error"),
    [
        ('{"en": {"body": "Hi {{ customer.first_name "}}', None),  # Jinja syntax
        ('{"de": {"body": "Hallo"}}', "variants: the default locale 'en' is missing"),
        ('{"en": {"subject": "Hi"}}', "variants.en.subject: not a field of sms messages (body)"),
        ('{"en": {"body": ""}}', "variants.en.body: is required"),
        ("", 'variants: give at least one locale, e.g. {"en": {...}}'),
    ],
)
def test_an_invalid_working_copy_is_refused_on_the_variants_field_and_nothing_changes(
    admin_client: Client, make_template: Make, variants: str, error: str | None
) -> None:
    template = make_template("tips-sms", "sms")
    before = template.variants

    response = admin_client.post(
        _url("template_change", template.pk), _template_form(template, variants=variants)
    )

    errors = response.context["adminform"].form.errors
    assert list(errors) == ["variants"]
    if error is None:
        (message,) = errors["variants"]
        assert message.startswith("variants.en.body: line 1: ")
    else:
        assert errors["variants"] == [error]
    template.refresh_from_db()
    assert template.variants == before


def test_a_json_syntax_error_says_where(admin_client: Client, make_template: Make) -> None:
    template = make_template("tips-sms", "sms")

    response = admin_client.post(
        _url("template_change", template.pk), _template_form(template, variants='{"en": ')
    )

    assert response.context["adminform"].form.errors["variants"] == [
        "Not valid JSON: Expecting value at line 1, column 8."
    ]


def test_editing_an_active_template_keeps_sending_the_active_version_until_activate(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")
    version = template.active_version

    response = admin_client.post(
        _url("template_change", template.pk),
        _template_form(template, name="Renamed", variants='{"en": {"body": "New text"}}'),
    )

    template.refresh_from_db()
    assert response.status_code == 302
    assert (template.name, template.variants) == ("Renamed", {"en": {"body": "New text"}})
    assert (template.active_version, template.status) == (version, TemplateStatus.ACTIVE)
    assert TemplateVersion.objects.filter(template=template).count() == 1
    assert _messages(response)[0] == (
        "Saved the working copy. Sends keep using v1 until you press Activate."
    )


def test_key_and_channel_are_fixed_once_made(admin_client: Client, make_template: Make) -> None:
    template = make_template("tips-sms", "sms")

    admin_client.post(
        _url("template_change", template.pk),
        _template_form(template, key="other", channel="email"),
    )

    template.refresh_from_db()
    assert (template.key, template.channel) == ("tips-sms", "sms")


def test_the_change_page_shows_help_and_the_version_history(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")
    template_save(
        key="tips-sms",
        name="tips-sms",
        channel="sms",
        topic=template.topic,
        default_locale="en",
        variants={"en": {"body": "v2"}},
    )
    admin_client.post(_button(template, "activate"))

    html = _html(admin_client.get(_url("template_change", template.pk)))

    assert "<td>v2 <strong>(active)</strong></td>" in html
    assert "<td>v1</td>" in html
    assert "sms: body*" in html
    assert "email: subject*, preheader, html*, text" in html
    assert 'class="template-json"' in html


# --- Preview --------------------------------------------------------------------------------


def test_the_preview_renders_the_email_for_the_sample_customer_in_a_sandboxed_frame(
    admin_client: Client, templates: dict[str, Template]
) -> None:
    response = admin_client.get(_url("template_change", templates["email"].pk))

    html = _html(response)
    rendered = render("email", EMAIL_FIELDS, SAMPLE_CONTEXT)
    assert "rendered for the sample customer (Ada)" in html
    assert '<th scope="row">subject</th><td>Welcome, Ada</td>' in html
    assert (
        '<iframe sandbox="" referrerpolicy="no-referrer" title="Rendered email HTML" '
        f'srcdoc="{escape(rendered["html"])}"'
    ) in html
    assert f'<pre style="white-space: pre-wrap; margin: 0;">{escape(rendered["text"])}</pre>' in (
        html
    )
    assert "<p>Hi Ada</p>" not in html  # only ever inside the escaped srcdoc


def test_the_preview_renders_for_a_chosen_customer_with_sample_links(
    admin_client: Client, templates: dict[str, Template]
) -> None:
    grace = CustomerFactory(external_id="grace", traits={"first_name": "Grace"})

    response = admin_client.get(
        _url("template_change", templates["email"].pk), {"preview_customer": grace.pk}
    )

    html = _html(response)
    assert "rendered for customer grace." in html
    assert '<th scope="row">subject</th><td>Welcome, Grace</td>' in html
    assert f'value="{grace.pk}"' in html
    assert "/c/u/" not in html.replace(SAMPLE_CONTEXT["links"]["unsubscribe"], "")


def test_an_unknown_preview_customer_falls_back_to_the_sample_and_says_so(
    admin_client: Client, templates: dict[str, Template]
) -> None:
    response = admin_client.get(
        _url("template_change", templates["sms"].pk), {"preview_customer": "999999"}
    )

    html = _html(response)
    assert (
        '<p class="errornote">No customer with id 999999: showing the sample customer instead.</p>'
    ) in html
    assert '<pre style="white-space: pre-wrap; margin: 0;">Hi Ada: 3 tips inside</pre>' in html


def test_the_sms_preview_shows_encoding_characters_and_segments(
    admin_client: Client, templates: dict[str, Template], make_template: Make
) -> None:
    cyrillic = make_template("ru-sms", "sms", fields={"body": "Привет!" * 12})

    gsm = _html(admin_client.get(_url("template_change", templates["sms"].pk)))
    ucs = _html(admin_client.get(_url("template_change", cyrillic.pk)))

    assert (
        '<p class="messaging-sms">SMS: GSM-7, 21 characters, 1 segment (160 characters fit '
        "one segment, 153 each when split).</p>"
    ) in gsm
    assert (
        '<p class="messaging-sms">SMS: UCS-2, 84 characters, 2 segments (a character outside '
        "the GSM-7 alphabet makes the whole text UCS-2: 70 characters fit one segment, 67 each "
        "when split).</p>"
    ) in ucs


def test_a_broken_working_copy_shows_the_error_with_field_and_line(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")
    broken = {"body": "Hi\n{{ customer.first_name "}
    Template.objects.filter(pk=template.pk).update(variants={"en": broken})
    with pytest.raises(RenderError) as caught:
        render("sms", broken, SAMPLE_CONTEXT)

    response = admin_client.get(_url("template_change", template.pk))

    assert response.status_code == 200
    assert caught.value.line == 2
    assert caught.value.message.startswith("line 2: ")
    assert (
        '<p class="errornote messaging-render-error">Field “body”: '
        f"{escape(caught.value.message)}</p>"
    ) in _html(response)


def test_a_template_that_fails_for_the_chosen_customer_shows_why(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("plain", "sms", fields={"body": "Hi {{ customer.first_name }}"})
    nameless = CustomerFactory(traits={})

    response = admin_client.get(
        _url("template_change", template.pk), {"preview_customer": nameless.pk}
    )

    assert response.status_code == 200
    assert (
        '<p class="errornote messaging-render-error">Field “body”: line 1: '
        "&#x27;dict object&#x27; has no attribute &#x27;first_name&#x27;</p>"
    ) in _html(response)


def test_a_missing_default_locale_variant_is_shown_as_an_error(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")
    Template.objects.filter(pk=template.pk).update(default_locale="de")

    response = admin_client.get(_url("template_change", template.pk))

    assert "Field “variants”: there is no variant for the default locale &#x27;de&#x27;" in _html(
        response
    )


# --- Buttons: activate, archive, send test ---------------------------------------------------


def test_the_change_page_offers_the_buttons_that_fit_the_status(
    admin_client: Client, templates: dict[str, Template], topics: dict[str, Topic]
) -> None:
    draft = template_save(
        key="draft",
        name="Draft",
        channel="sms",
        topic=topics["tips"],
        default_locale="en",
        variants={"en": CHANNEL_FIELDS["sms"]},
    )
    active = templates["sms"]

    draft_page = _html(admin_client.get(_url("template_change", draft.pk)))
    active_page = _html(admin_client.get(_url("template_change", active.pk)))

    assert f'action="{_button(draft, "activate")}"' in draft_page
    assert f'action="{_button(draft, "archive")}"' in draft_page
    assert f'action="{_button(draft, "send_test")}"' not in draft_page
    assert f'action="{_button(active, "activate")}"' not in active_page  # nothing new
    assert f'action="{_button(active, "archive")}"' in active_page
    assert f'action="{_button(active, "send_test")}"' in active_page
    assert 'name="csrfmiddlewaretoken"' in draft_page


def test_activate_snapshots_the_working_copy_as_the_next_version(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")
    Template.objects.filter(pk=template.pk).update(variants={"en": {"body": "Second"}})

    response = admin_client.post(_button(template, "activate"))

    template.refresh_from_db()
    assert response.status_code == 302
    assert response["Location"] == _url("template_change", template.pk)
    assert template.active_version is not None
    assert (template.active_version.number, template.active_version.variants) == (
        2,
        {"en": {"body": "Second"}},
    )
    assert template.active_version.created_by == User.objects.get(username="admin")
    assert _messages(response) == ["Activated v2 of “tips-sms”: new sends use it."]


def test_activating_an_unchanged_template_makes_no_version(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")

    response = admin_client.post(_button(template, "activate"))

    assert TemplateVersion.objects.filter(template=template).count() == 1
    assert _messages(response) == ["Nothing new to activate: v1 is live."]


def test_activate_refuses_an_invalid_working_copy_and_says_why(
    admin_client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")
    Template.objects.filter(pk=template.pk).update(variants={"en": {"body": ""}})

    response = admin_client.post(_button(template, "activate"))

    assert _messages(response) == ["Not activated: variants.en.body: is required"]
    assert TemplateVersion.objects.filter(template=template).count() == 1


def test_archive_stops_the_template(admin_client: Client, make_template: Make) -> None:
    template = make_template("tips-sms", "sms")

    response = admin_client.post(_button(template, "archive"))

    template.refresh_from_db()
    assert (template.status, template.active_version) == (TemplateStatus.ARCHIVED, None)
    assert _messages(response) == [
        "Archived “tips-sms”: requests naming it are refused from now on; messages already "
        "queued still go out. Activate makes it live again."
    ]


def test_send_test_asks_for_a_real_message_and_reports_its_outcome(
    admin_client: Client, templates: dict[str, Template], customer: Customer
) -> None:
    response = admin_client.post(
        _button(templates["sms"], "send_test"), {"customer_id": customer.pk}
    )

    message = Message.objects.get()
    assert response.status_code == 302
    assert message.idempotency_key.startswith(f"test:tips-sms:{customer.pk}:")
    assert (message.status, message.reason, message.channel, message.customer) == (
        "queued",
        "",
        "sms",
        customer,
    )
    assert message.rendered == {"body": "Hi Ada: 3 tips inside"}
    assert _messages(response) == [
        f'Test <a href="{_url("message_change", message.pk)}">message {message.pk}</a> to '
        f"{customer}: queued. It went through the real delivery policy (consent, "
        "suppressions, caps, quiet hours) and counts towards the customer's caps."
    ]


def test_send_test_to_an_opted_out_customer_is_suppressed_and_says_why(
    admin_client: Client, templates: dict[str, Template], customer: Customer
) -> None:
    _opt_out(customer, "sms")

    response = admin_client.post(
        _button(templates["sms"], "send_test"), {"customer_id": customer.pk}
    )

    message = Message.objects.get()
    assert (message.status, message.reason) == ("suppressed", reasons.NO_CONSENT)
    sentence = reason_sentence(reasons.NO_CONSENT, "opted_out (opt_out region)")
    assert (
        f"to {customer}: suppressed. {escape(sentence)} It went through" in (_messages(response)[0])
    )


def test_send_test_to_an_unknown_customer_sends_nothing(
    admin_client: Client, templates: dict[str, Template]
) -> None:
    response = admin_client.post(_button(templates["sms"], "send_test"), {"customer_id": "abc"})

    assert _messages(response) == ["No test sent: no customer with id “abc”."]
    assert Message.objects.count() == 0


def test_send_test_of_a_template_without_an_active_version_sends_nothing(
    admin_client: Client, make_template: Make, customer: Customer
) -> None:
    template = make_template("tips-sms", "sms")
    admin_client.post(_button(template, "archive"))

    response = admin_client.post(_button(template, "send_test"), {"customer_id": customer.pk})

    (text,) = _messages(response)[1:]
    assert text.startswith(f"No test sent: request 0 (test:tips-sms:{customer.pk}:")
    assert text.endswith("): template 'tips-sms' has no active version.")
    assert Message.objects.count() == 0


@pytest.mark.parametrize("button", BUTTONS)
def test_buttons_refuse_get(admin_client: Client, make_template: Make, button: str) -> None:
    template = make_template("tips-sms", "sms")

    response = admin_client.get(_button(template, button))

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    template.refresh_from_db()
    assert template.status == TemplateStatus.ACTIVE
    assert (TemplateVersion.objects.count(), Message.objects.count()) == (1, 0)


@pytest.mark.parametrize("button", BUTTONS)
def test_buttons_refuse_staff_without_the_change_permission(
    viewer_client: Client, make_template: Make, customer: Customer, button: str
) -> None:
    template = make_template("tips-sms", "sms")
    Template.objects.filter(pk=template.pk).update(variants={"en": {"body": "changed"}})

    page = viewer_client.get(_url("template_change", template.pk))
    response = viewer_client.post(_button(template, button), {"customer_id": customer.pk})

    assert page.status_code == 200
    html = _html(page)
    assert f'action="{_button(template, button)}"' not in html
    assert "Hi Ada: 3 tips inside" not in html  # the preview shows the saved working copy
    assert "changed</pre>" in html
    assert response.status_code == 403
    template.refresh_from_db()
    assert template.status == TemplateStatus.ACTIVE
    assert (TemplateVersion.objects.count(), Message.objects.count()) == (1, 0)


@pytest.mark.parametrize("button", BUTTONS)
def test_buttons_refuse_a_post_without_the_csrf_token(
    make_template: Make, customer: Customer, button: str
) -> None:
    template = make_template("tips-sms", "sms")
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("boss", password="irrelevant"))

    response = client.post(_button(template, button), {"customer_id": customer.pk})

    assert response.status_code == 403
    template.refresh_from_db()
    assert template.status == TemplateStatus.ACTIVE
    assert Message.objects.count() == 0


def test_buttons_send_anonymous_visitors_to_the_login_page(
    client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")

    response = client.post(_button(template, "archive"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    template.refresh_from_db()
    assert template.status == TemplateStatus.ACTIVE


def test_a_button_on_an_unknown_template_is_not_found(admin_client: Client) -> None:
    assert admin_client.post(_url("template_archive", 999_999)).status_code == 404


def test_staff_with_the_change_permission_may_press_the_buttons(
    client: Client, make_template: Make
) -> None:
    template = make_template("tips-sms", "sms")
    staff = _staff(client, "view_template", "change_template")

    response = staff.post(_button(template, "archive"))

    template.refresh_from_db()
    assert response.status_code == 302
    assert template.status == TemplateStatus.ARCHIVED


def test_templates_cannot_be_deleted(admin_client: Client, make_template: Make) -> None:
    template = make_template("tips-sms", "sms")

    response = admin_client.post(_url("template_delete", template.pk), {"post": "yes"})

    assert response.status_code == 403
    assert Template.objects.filter(pk=template.pk).exists()


# --- Frequency caps -----------------------------------------------------------------------


def _cap_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "3 emails a week",
        "scope": "channel",
        "channel": "email",
        "topic": "",
        "journey_key": "",
        "limit": "3",
        "window": "7 days",
        "is_active": "on",
    }
    data.update(overrides)
    return data


def test_a_cap_window_is_written_and_shown_in_words(admin_client: Client) -> None:
    response = admin_client.post(_url("frequencycap_add"), _cap_form(window="2 weeks 3 days"))

    cap = FrequencyCap.objects.get()
    assert response.status_code == 302
    assert (cap.scope, cap.channel, cap.limit, cap.window) == (
        "channel",
        "email",
        3,
        dt.timedelta(days=17),
    )
    html = _html(admin_client.get(_url("frequencycap_changelist")))
    assert ("window_label", "17 days") in cells(html)
    assert ("applies_to", "Email") in cells(html)


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"channel": ""}, {"channel": ["A “one channel” cap needs this."]}),
        (
            {"scope": "marketing"},
            {"channel": ["Only for a “one channel” cap; leave it empty."]},
        ),
        ({"scope": "journey", "channel": ""}, {"journey_key": ["A “one journey” cap needs this."]}),
        (
            {"window": "soon"},
            {"window": ['Enter a duration such as "7 days", "36 hours" or "2 weeks".']},
        ),
        ({"window": "0 days"}, {"window": ["Give a window longer than zero."]}),
    ],
)
def test_a_cap_that_could_never_apply_is_refused(
    admin_client: Client, overrides: dict[str, str], errors: dict[str, list[str]]
) -> None:
    response = admin_client.post(_url("frequencycap_add"), _cap_form(**overrides))

    assert response.context["adminform"].form.errors == errors
    assert FrequencyCap.objects.count() == 0


# --- Messages: the send log -------------------------------------------------------------------


def test_the_message_list_shows_customer_channel_status_reason_topic_and_template(
    admin_client: Client, templates: dict[str, Template], customer: Customer
) -> None:
    message = _ask(customer, "tips-email")

    html = _html(admin_client.get(_url("message_changelist")))

    customer_url = reverse("admin:customers_customer_change", args=(customer.pk,))
    template_url = _url("template_change", templates["email"].pk)
    assert has_cells(
        html,
        ("id", f'<a href="{_url("message_change", message.pk)}">{message.pk}</a>'),
        ("customer_link", f'<a href="{customer_url}">{customer}</a>'),
        ("channel", "Email"),
        ("status", "Queued"),
        ("reason", "-"),
        ("topic", "Tips"),
        ("template_label", f'<a href="{template_url}">tips-email</a> v1'),
    )


def test_the_message_list_offers_no_facet_counts(
    admin_client: Client, templates: dict[str, Template], customer: Customer
) -> None:
    _ask(customer, "tips-email")

    plain = admin_client.get(_url("message_changelist"))
    asked = admin_client.get(_url("message_changelist"), {"_facets": "True"})

    assert "_facets" not in plain.content.decode()
    assert asked.context["cl"].add_facets is False


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "suppressed"}, ["no-consent"]),
        ({"reason": "retries_exhausted"}, ["failed"]),
        ({"channel__exact": "sms"}, ["sms"]),
        ({"status__exact": "queued", "channel__exact": "email"}, ["email"]),
    ],
)
def test_the_message_list_filters_by_status_reason_channel_and_topic(
    admin_client: Client,
    templates: dict[str, Template],
    customer: Customer,
    topics: dict[str, Topic],
    query: dict[str, str],
    expected: list[str],
) -> None:
    other = CustomerFactory(email="bo@example.com", phone="+14155550101")
    _opt_out(other, "email")
    rows = {
        "email": _ask(customer, "tips-email", key="a"),
        "sms": _ask(customer, "tips-sms", key="b"),
        "no-consent": _ask(other, "tips-email", key="c"),
        "failed": _failed(topics["tips"], customer, reasons.RETRIES_EXHAUSTED, "d"),
    }
    names = {row.pk: name for name, row in rows.items()}

    response = admin_client.get(_url("message_changelist"), query)

    assert sorted(names[row.pk] for row in response.context["cl"].result_list) == expected


def test_the_message_list_filters_by_topic(
    admin_client: Client, make_template: Make, customer: Customer, topics: dict[str, Topic]
) -> None:
    make_template("receipt", "email", topic="receipts")
    make_template("tips-email", "email")
    receipt = _ask(customer, "receipt", key="a")
    _ask(customer, "tips-email", key="b")

    response = admin_client.get(
        _url("message_changelist"), {"topic__id__exact": topics["receipts"].pk}
    )

    assert list(response.context["cl"].result_list) == [receipt]


@pytest.mark.parametrize("term", ["user-x", "Ada.Other@example.com", "idem-1", "prov-77"])
def test_the_message_list_finds_messages_by_customer_key_or_provider_id(
    admin_client: Client, topics: dict[str, Topic], term: str
) -> None:
    wanted_customer = CustomerFactory(external_id="user-x", email="ada.other@example.com")
    wanted = _failed(topics["tips"], wanted_customer, reasons.RETRIES_EXHAUSTED, "idem-1")
    Message.objects.filter(pk=wanted.pk).update(provider_id="prov-77")
    _failed(topics["tips"], CustomerFactory(), reasons.RETRIES_EXHAUSTED, "idem-2")

    response = admin_client.get(_url("message_changelist"), {"q": term})

    assert [row.pk for row in response.context["cl"].result_list] == [wanted.pk]


def test_the_message_list_never_counts_the_whole_table_and_its_queries_are_fixed(
    admin_client: Client,
    topics: dict[str, Topic],
    templates: dict[str, Template],
    django_assert_max_num_queries: Any,
) -> None:
    url = _url("message_changelist")
    _ask(CustomerFactory(), "tips-email", key="first")
    admin_client.get(url)
    # session, user, capped count, the page, the topic filter's choices
    with django_assert_max_num_queries(6) as one:
        admin_client.get(url)
    for index in range(30):
        _ask(CustomerFactory(), "tips-email", key=f"k{index}")

    with django_assert_max_num_queries(6) as many:
        response = admin_client.get(url)

    assert len(response.context["cl"].result_list) == 31
    assert response.context["cl"].full_result_count is None
    assert len(many.captured_queries) == len(one.captured_queries)
    assert not any(
        "COUNT(*)" in q["sql"] and "LIMIT" not in q["sql"] for q in many.captured_queries
    )


def test_the_why_panel_reads_each_channel_tried_as_a_sentence(
    admin_client: Client, templates: dict[str, Template], customer: Customer
) -> None:
    _opt_out(customer, "email")
    message = _ask(customer, "tips-email", "tips-sms")

    html = _html(admin_client.get(_url("message_change", message.pk)))

    no_consent = reason_sentence(reasons.NO_CONSENT, "opted_out (opt_out region)")
    assert (
        "<p><strong>Queued on SMS.</strong> The policy let it go; it waits for its "
        "channel&#x27;s send task.</p>"
    ) in html
    assert (
        '<ol class="messaging-why-channels">'
        f"<li><strong>Email</strong>: {escape(no_consent)}</li>"
        "<li><strong>SMS</strong>: Passed every check; this channel was chosen.</li>"
        "</ol>"
    ) in html


def test_the_why_panel_explains_a_suppressed_message(
    admin_client: Client, templates: dict[str, Template], customer: Customer
) -> None:
    _opt_out(customer, "sms")
    message = _ask(customer, "tips-sms")

    html = _html(admin_client.get(_url("message_change", message.pk)))

    sentence = escape(reason_sentence(reasons.NO_CONSENT, "opted_out (opt_out region)"))
    assert "<p><strong>Suppressed.</strong> Not sent: the policy stopped it.</p>" in html
    assert f'<p class="messaging-why-reason">{sentence}</p>' in html
    assert "Nothing was rendered" in html


def test_the_why_panel_explains_a_failed_send_with_its_error(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    message = _failed(topics["tips"], customer, reasons.RETRIES_EXHAUSTED, "k")

    html = _html(admin_client.get(_url("message_change", message.pk)))

    assert "<p><strong>Failed on Email.</strong> Not sent: sending failed.</p>" in html
    assert (
        '<p class="messaging-why-reason">Every attempt failed with a temporary error, up to '
        "the last one allowed: timeout.</p>"
    ) in html


def test_a_message_page_shows_the_email_without_its_tracking(
    admin_client: Client, templates: dict[str, Template], customer: Customer, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "https://mp.example.com"
    message = _ask(customer, "tips-email")
    assert "https://mp.example.com/m/o/" in message.rendered["html"]

    html = _html(admin_client.get(_url("message_change", message.pk)))

    assert "/m/o/" not in html
    assert "/m/c/" not in html
    # The original link, escaped once in the HTML and once more inside srcdoc.
    assert "https://example.com/start?a=1&amp;amp;b=2" in html
    assert "src=&quot;&quot; width=&quot;1&quot;" in html
    assert '<th scope="row">subject</th><td>Welcome, Ada</td>' in html


def test_the_send_log_cannot_be_added_edited_or_deleted(
    admin_client: Client, templates: dict[str, Template], customer: Customer
) -> None:
    message = _ask(customer, "tips-email")
    change_url = _url("message_change", message.pk)

    add = admin_client.get(_url("message_add"))
    change = admin_client.post(change_url, {"status": "sent"})
    delete = admin_client.post(_url("message_delete", message.pk), {"post": "yes"})

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    message.refresh_from_db()
    assert message.status == "queued"
    assert 'name="_save"' not in _html(admin_client.get(change_url))


def test_an_erased_customers_message_says_so(
    admin_client: Client, topics: dict[str, Topic]
) -> None:
    message = _failed(topics["tips"], None, reasons.PROVIDER_REJECTED, "k")

    page = _html(admin_client.get(_url("message_change", message.pk)))
    listing = _html(admin_client.get(_url("message_changelist")))

    assert readonly(page, "customer_link") == "erased customer"
    assert ("customer_link", "erased customer") in cells(listing)


# --- Retry action -----------------------------------------------------------------------------


def _retry(client: Client, *messages: Message) -> Any:
    return client.post(
        _url("message_changelist"),
        {"action": "retry", "_selected_action": [m.pk for m in messages]},
    )


def test_retry_requeues_only_the_retryable_messages_and_says_how_many_it_skipped(
    admin_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    exhausted = _failed(topics["tips"], customer, reasons.RETRIES_EXHAUSTED, "a")
    rejected = _failed(topics["tips"], customer, reasons.PROVIDER_REJECTED, "b")
    bad = _failed(topics["tips"], customer, reasons.BAD_ADDRESS, "c")
    broken = _failed(topics["tips"], customer, reasons.TEMPLATE_ERROR, "d")

    response = _retry(admin_client, exhausted, rejected, bad, broken)

    assert response.status_code == 302
    statuses = {m.pk: (m.status, m.reason) for m in Message.objects.all()}
    assert statuses == {
        exhausted.pk: ("deferred", ""),
        rejected.pk: ("deferred", ""),
        bad.pk: ("failed", reasons.BAD_ADDRESS),
        broken.pk: ("failed", reasons.TEMPLATE_ERROR),
    }
    assert _messages(response) == [
        "2 messages handed back to the delivery policy. Each is weighed again (consent, "
        "suppressions, caps as they are now) at the next tick and sent or recorded with its "
        "reason; an unconfirmed one may already have reached the customer. 2 "
        "skipped: only sends that failed after every retry or were refused by the provider, "
        "and unconfirmed sends, are retried (never a bad address or a template error)."
    ]


def test_retry_is_not_offered_to_staff_without_the_change_permission(
    viewer_client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    message = _failed(topics["tips"], customer, reasons.RETRIES_EXHAUSTED, "a")

    page = viewer_client.get(_url("message_changelist"))
    response = _retry(viewer_client, message)

    assert 'value="retry"' not in page.content.decode()
    assert response.status_code == 200  # the unknown action is refused as "no action selected"
    message.refresh_from_db()
    assert (message.status, message.reason) == ("failed", reasons.RETRIES_EXHAUSTED)


def test_retry_is_offered_to_staff_with_the_change_permission(
    client: Client, topics: dict[str, Topic], customer: Customer
) -> None:
    message = _failed(topics["tips"], customer, reasons.RETRIES_EXHAUSTED, "a")
    staff = _staff(client, "view_message", "change_message")

    response = _retry(staff, message)

    message.refresh_from_db()
    assert response.status_code == 302
    assert message.status == "deferred"


def test_retry_refuses_a_post_without_the_csrf_token(
    topics: dict[str, Topic], customer: Customer
) -> None:
    message = _failed(topics["tips"], customer, reasons.RETRIES_EXHAUSTED, "a")
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("boss", password="irrelevant"))

    response = _retry(client, message)

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == "failed"
