"""The messaging demo: templates on every channel, caps, some consent and a suppression, and
one round of sends to the demo customers so the admin has real decisions to explain.
Idempotent: templates and caps are matched by key and name, sends by idempotency key."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

from consent.models import Topic
from consent.services import Evidence, subscription_set, suppression_add
from customers.models import Customer
from messaging.models import FrequencyCap, Message
from messaging.services import SendRequest, messages_request
from messaging.templating import template_activate, template_save

_TIPS_CONTEXT_HTML = (
    "<p>Hi {{ customer.first_name | default('there') }},</p>"
    "<p>{% if milestone is defined %}You are at {{ milestone.label }} on "
    "<b>{{ milestone.name }}</b>.{% else %}Here are three ways to get more done.{% endif %}</p>"
    '<p><a href="https://example.com/guides/automation">Automate your first report</a></p>'
    '<p><a href="https://example.com/guides/invite">Invite a teammate</a></p>'
    '<p style="font-size:12px"><a href="{{ links.preferences }}" data-notrack>Preferences</a>'
    ' · <a href="{{ links.unsubscribe }}" data-notrack>Unsubscribe</a></p>'
)
TEMPLATES: list[tuple[str, str, str, str, dict[str, Any]]] = [
    (
        "double-opt-in-confirmation", "Confirm your subscription", "email", "transactional",
        {
            "subject": "Please confirm your subscription",
            "preheader": "One click and you are in",
            "html": '<p>Please confirm that you want our emails:</p>'
            '<p><a href="{{ confirm_url }}" data-notrack>Yes, subscribe me</a></p>',
            "text": "",
        },
    ),
    (
        "onboarding-tips-email", "Onboarding tips (email)", "email", "marketing",
        {"subject": "{{ customer.first_name | default('Hi') }}, 3 tips to get started",
         "preheader": "Automation, teammates and more", "html": _TIPS_CONTEXT_HTML, "text": ""},
    ),
    (
        "onboarding-tips-push", "Onboarding tips (push)", "push", "marketing",
        {"title": "3 tips to get started", "body": "Automate your first report in 2 minutes",
         "deep_link": "app://guides/automation", "data": {"kind": "tips"}},
    ),
    (
        "onboarding-tips-sms", "Onboarding tips (SMS)", "sms", "marketing",
        {"body": "{{ customer.first_name | default('Hi') }}, automate your first report: "
                 "https://example.com/g/a Reply STOP to opt out"},
    ),
    (
        "onboarding-checklist-in_app", "Onboarding checklist (in-app)", "in_app", "marketing",
        {"title": "Finish setting up", "body": "Two steps left: invite a teammate, complete a task",
         "cta_label": "Open checklist", "cta_url": "/onboarding"},
    ),
]  # fmt: skip
CAPS = [
    ("3 marketing messages per 7 days", "marketing", "", 3, dt.timedelta(days=7)),
    ("1 SMS per day", "channel", "sms", 1, dt.timedelta(days=1)),
]


@dataclasses.dataclass(frozen=True, slots=True)
class MessagingDemoResult:
    templates: int
    messages: dict[str, int]


def messaging_demo_seed() -> MessagingDemoResult:
    topics = {t.key: t for t in Topic.objects.all()}
    for key, name, channel, topic, fields in TEMPLATES:
        template = template_save(
            key=key, name=name, channel=channel, topic=topics[topic], default_locale="en",
            variants={"en": fields},
        )  # fmt: skip
        template_activate(template_id=template.pk)
    for name, scope, channel, limit, window in CAPS:
        FrequencyCap.objects.get_or_create(
            name=name,
            defaults={"scope": scope, "channel": channel, "limit": limit, "window": window},
        )
    customers = list(
        Customer.objects.filter(external_id__startswith="demo-user-").order_by("external_id")[:12]
    )
    if customers:
        _consent_examples(customers)
        messages_request(
            [
                SendRequest(
                    f"demo-tips:{c.pk}",
                    c.pk,
                    ("onboarding-tips-push", "onboarding-tips-email", "onboarding-tips-sms"),
                    priority=5,
                )
                for c in customers
            ]
            + [
                SendRequest(f"demo-checklist:{c.pk}", c.pk, ("onboarding-checklist-in_app",))
                for c in customers
            ]
        )
    counts = Counter(
        f"{status} ({reason})" if reason else status
        for status, reason in Message.objects.filter(
            idempotency_key__startswith="demo-"
        ).values_list("status", "reason")
    )
    return MessagingDemoResult(len(TEMPLATES), dict(sorted(counts.items())))


def _consent_examples(customers: list[Customer]) -> None:
    """A few real-looking consent states: an SMS opt-out, an explicit email opt-in, and a
    hard-bounced address."""
    admin = Evidence(source="admin", wording="Demo seed")
    subscription_set(
        customer_id=customers[0].pk, channel="sms", topic_keys=None, status="opted_out",
        evidence=admin,
    )  # fmt: skip
    if len(customers) > 1:
        subscription_set(
            customer_id=customers[1].pk, channel="email", topic_keys=["marketing"],
            status="opted_in", evidence=admin,
        )  # fmt: skip
    if len(customers) > 2 and customers[2].email:
        suppression_add(
            kind="email", address=customers[2].email, reason="hard_bounce", note="Demo seed"
        )
