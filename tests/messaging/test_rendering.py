"""Pure tests of message rendering per channel: fields, render, locale variants. No database."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from messaging.rendering import (
    CHANNEL_FIELDS,
    Limits,
    RenderError,
    fields_validate,
    render,
    variant_for,
)

CONTEXT: dict[str, Any] = {
    "customer": {"first_name": "Ana", "plan": "pro", "company": None, "traits": {"team": "A&B"}},
    "account": {"name": "Acme <Labs>"},
    "milestone": {
        "name": "First project",
        "achieved_at": dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC),
    },
    "event": {"name": "Project Created"},
    "links": {"unsubscribe": "https://ex.com/u?t=1&c=2", "preferences": "https://ex.com/p"},
}


def render_error(channel: str, fields: dict[str, Any], **kwargs: Any) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render(channel, fields, kwargs.pop("context", CONTEXT), **kwargs)
    return caught.value


def test_the_channels_and_their_fields_are_fixed() -> None:
    assert dict(CHANNEL_FIELDS) == {
        "email": ("subject", "preheader", "html", "text"),
        "sms": ("body",),
        "push": ("title", "body", "deep_link", "data"),
        "in_app": ("title", "body", "cta_label", "cta_url"),
    }


# -- fields_validate


def test_valid_fields_pass_validation_for_every_channel() -> None:
    fields_validate("email", {"subject": "Hi", "html": "<p>Hi</p>"})
    fields_validate("sms", {"body": "Hi {{ customer.first_name }}"})
    fields_validate("push", {"body": "Hi", "data": {"screen": "home", "n": 1}})
    fields_validate("in_app", {"title": "Hi", "body": "Yo", "cta_label": "Go", "cta_url": "/go"})


@pytest.mark.parametrize(
    ("channel", "fields", "field", "message"),
    [
        ("fax", {"body": "Hi"}, "channel", "unknown channel 'fax'"),
        ("sms", {"body": "Hi", "title": "x"}, "title", "not a field of sms messages (body)"),
        ("email", {"html": "<p>Hi</p>"}, "subject", "is required"),
        ("email", {"subject": "  ", "html": "<p>Hi</p>"}, "subject", "is required"),
        ("sms", {"body": 42}, "body", "must be text, not int"),
        ("push", {"body": "Hi", "data": ["x"]}, "data", "must be a JSON object, not list"),
        ("push", {"body": "Hi", "data": {"when": dt.date(2026, 1, 1)}}, "data",
         "data.when is not a JSON value: date"),
        ("push", {"body": "Hi", "data": {1: "x"}}, "data", "data has a key that is not text: 1"),
        ("in_app", {"title": "T", "body": "B", "cta_label": "Go"}, "cta_url",
         "a call to action needs both a label and a URL"),
        ("in_app", {"title": "T", "body": "B", "cta_url": "/go"}, "cta_label",
         "a call to action needs both a label and a URL"),
    ],
)  # fmt: skip
def test_fields_that_do_not_suit_the_channel_are_refused_with_the_field_named(
    channel: str, fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(RenderError) as caught:
        fields_validate(channel, fields)

    assert (caught.value.field, caught.value.message) == (field, message)


def test_a_template_that_does_not_compile_is_refused_with_its_field_and_line() -> None:
    with pytest.raises(RenderError) as caught:
        fields_validate("email", {"subject": "Hi", "html": "<p>\n{% if x %}\n</p>"})

    error = caught.value
    assert (error.field, error.line) == ("html", 3)
    assert error.message == (
        "line 3: Unexpected end of template. Jinja was looking for the following tags: "
        "'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'."
    )
    assert str(error) == f"html: {error.message}"


def test_an_unknown_filter_is_refused_when_the_template_is_validated() -> None:
    with pytest.raises(RenderError) as caught:
        fields_validate("sms", {"body": "{{ customer.first_name|safe }}"})

    assert (caught.value.field, caught.value.message) == ("body", "line 1: No filter named 'safe'.")


def test_a_push_data_template_that_does_not_compile_names_its_key() -> None:
    with pytest.raises(RenderError) as caught:
        fields_validate("push", {"body": "Hi", "data": {"deep": {"x": "{{ oops"}}})

    assert caught.value.field == "data"
    assert caught.value.message.startswith("data.deep.x: line 1: unexpected end of template")


# -- render


def test_an_email_renders_every_field_and_escapes_only_the_html() -> None:
    fields = {
        "subject": "{{ customer.first_name }}, welcome to {{ account.name }}",
        "preheader": "Team {{ customer.traits.team }}",
        "html": "<p>Hi {{ customer.first_name }} of {{ account.name }}</p>",
        "text": "Hi {{ customer.first_name }} of {{ account.name }}",
    }

    rendered = render("email", fields, CONTEXT)

    assert rendered == {
        "subject": "Ana, welcome to Acme <Labs>",
        "preheader": "Team A&B",
        "html": "<p>Hi Ana of Acme &lt;Labs&gt;</p>",
        "text": "Hi Ana of Acme <Labs>",
    }


def test_an_email_without_text_gets_one_made_from_its_html_with_link_urls() -> None:
    fields = {
        "subject": "Hi",
        "html": '<p>Hi {{ customer.first_name }},</p><p><a href="{{ links.preferences }}">'
        "Your preferences</a></p>",
        "text": "  ",
    }

    rendered = render("email", fields, CONTEXT)

    assert rendered["text"] == "Hi Ana,\n\nYour preferences (https://ex.com/p)"


def test_absent_optional_fields_render_empty() -> None:
    assert render("push", {"body": "Hi"}, CONTEXT) == {
        "title": "",
        "body": "Hi",
        "deep_link": "",
        "data": {},
    }


def test_a_subject_renders_on_one_line_and_bodies_are_trimmed() -> None:
    email = render(
        "email",
        {"subject": "{% if customer.plan %}\n  Pro  news\n{% endif %}", "html": "<p>x</p>"},
        CONTEXT,
    )
    sms = render("sms", {"body": "\n  Hi {{ customer.first_name }}\n\nBye  \n"}, CONTEXT)

    assert email["subject"] == "Pro news"
    assert sms == {"body": "Hi Ana\n\nBye"}


def test_a_null_value_prints_as_nothing() -> None:
    assert render("sms", {"body": "[{{ customer.company }}]"}, CONTEXT) == {"body": "[]"}


def test_default_fills_in_a_missing_value() -> None:
    rendered = render("sms", {"body": "Hi {{ customer.nickname|default('there') }}"}, CONTEXT)

    assert rendered == {"body": "Hi there"}


def test_a_template_that_reads_a_missing_variable_is_refused_with_its_field() -> None:
    error = render_error("email", {"subject": "Hi", "html": "<p>\n{{ customer.nickname }}</p>"})

    assert (error.field, error.line, error.message) == (
        "html",
        2,
        "line 2: 'dict object' has no attribute 'nickname'",
    )


def test_a_template_that_fails_while_rendering_is_refused_with_the_error() -> None:
    error = render_error("sms", {"body": "{{ 1 / 0 }}"})

    assert (error.field, error.message) == ("body", "line 1: ZeroDivisionError: division by zero")


def test_a_required_field_that_renders_blank_is_refused() -> None:
    error = render_error("sms", {"body": "{% if false %}Hi{% endif %}  "})

    assert (error.field, error.message) == ("body", "rendered empty")


def test_dates_format_with_strftime() -> None:
    fields = {"body": "Done on {{ milestone.achieved_at.strftime('%d %B %Y') }}"}

    assert render("sms", fields, CONTEXT) == {"body": "Done on 02 March 2026"}


def test_push_data_renders_each_string_value_and_keeps_the_rest() -> None:
    fields = {
        "body": "Hi",
        "data": {"who": "{{ customer.first_name }}", "n": 3, "nested": {"list": ["{{ 1 + 1 }}"]}},
    }

    assert render("push", fields, CONTEXT)["data"] == {
        "who": "Ana",
        "n": 3,
        "nested": {"list": ["2"]},
    }


def test_a_push_data_value_that_fails_names_its_key() -> None:
    error = render_error("push", {"body": "Hi", "data": {"a": {"b": "{{ nope }}"}}})

    assert (error.field, error.message) == ("data", "data.a.b: line 1: 'nope' is undefined")


@pytest.mark.parametrize(
    "url", ["https://ex.com/x?a=1&b=2", "myapp://orders/1", "/billing", "HTTP://EX.COM"]
)
def test_url_fields_accept_absolute_urls_and_paths(url: str) -> None:
    fields = {"title": "T", "body": "B", "cta_label": "Go", "cta_url": " {{ url }} "}

    assert render("in_app", fields, {"url": url})["cta_url"] == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("javascript:alert(1)", "rendered URL uses the unsafe scheme 'javascript'"),
        ("JavaScript:alert(1)", "rendered URL uses the unsafe scheme 'javascript'"),
        ("data:text/html,x", "rendered URL uses the unsafe scheme 'data'"),
        ("https://ex.com/a b", "rendered URL 'https://ex.com/a b' contains whitespace or control "
         "characters"),
        ("ex.com/x", "rendered URL 'ex.com/x' is neither absolute nor a path"),
    ],
)  # fmt: skip
def test_url_fields_refuse_unsafe_or_malformed_urls(url: str, message: str) -> None:
    error = render_error("push", {"body": "B", "deep_link": "{{ url }}"}, context={"url": url})

    assert (error.field, error.message) == ("deep_link", message)


def test_render_applies_the_limits_it_is_given() -> None:
    fields = {"body": "{% for _ in range(20) %}x{% endfor %}"}

    assert render("sms", fields, {}, limits=Limits(output_bytes=20)) == {"body": "x" * 20}
    error = render_error("sms", fields, context={}, limits=Limits(output_bytes=19))
    assert error.message == (
        "template exceeds a limit: the output is longer than the limit of 19 bytes"
    )


def test_render_does_not_change_the_context() -> None:
    context = {"customer": {"first_name": "Ana", "tags": ["a"]}}

    render("sms", {"body": "{% set customer = 1 %}{{ customer }}"}, context)

    assert context == {"customer": {"first_name": "Ana", "tags": ["a"]}}


# -- variant_for

VARIANTS: dict[str, dict[str, Any]] = {
    "en": {"body": "Hello"},
    "pt": {"body": "Olá"},
    "pt-BR": {"body": "Oi"},
    "fr_CA": {"body": "Allo"},
}


@pytest.mark.parametrize(
    ("locale", "default_locale", "expected"),
    [
        ("pt-BR", "en", "pt-BR"),  # exact
        ("pt_br", "en", "pt-BR"),  # case and "_" do not matter
        ("PT-br", "en", "pt-BR"),
        ("pt-PT", "en", "pt"),  # language
        ("pt", "en", "pt"),
        ("fr-ca", "en", "fr_CA"),
        ("fr", "en", "en"),  # a regional variant is not a language fallback
        ("de-DE", "en", "en"),  # default locale
        ("de-DE", "pt_BR", "pt-BR"),
        ("de-DE", "en-GB", "en"),  # the default locale's language
        ("de-DE", "es", "en"),  # first variant
        ("", "", "en"),
    ],
)
def test_the_variant_for_a_locale_falls_back_from_exact_to_language_to_default_to_first(
    locale: str, default_locale: str, expected: str
) -> None:
    assert variant_for(VARIANTS, locale, default_locale) == (expected, VARIANTS[expected])


def test_a_message_without_variants_has_no_variant_for_any_locale() -> None:
    with pytest.raises(RenderError) as caught:
        variant_for({}, "en", "en")

    assert (caught.value.field, caught.value.message) == (
        "variants",
        "the message has no variants",
    )
