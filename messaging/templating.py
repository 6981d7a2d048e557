"""Template writes: the editable working copy, validated on every save, and activation, which
snapshots it as an immutable version (DESIGN.md §2.5). A template that fails to render
against a sample customer is refused at save, never discovered at send time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from config.cache import cached
from consent.models import Topic
from messaging.models import Template, TemplateStatus, TemplateVersion
from messaging.rendering import RenderError, fields_validate, render

#: The context a template is checked against at save and previewed with by default.
SAMPLE_CONTEXT: Mapping[str, Any] = {
    "customer": {
        "id": 1,
        "external_id": "user-1",
        "email": "ada@example.com",
        "phone": "+14155550100",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "plan": "pro",
        "region": "GB",
        "locale": "en",
        "time_zone": "Europe/London",
        "lifecycle_stage": "active",
        "traits": {"first_name": "Ada", "last_name": "Lovelace"},
    },
    "account": {"id": 1, "name": "Analytical Engines Ltd"},
    "milestone": {
        "key": "activated",
        "name": "Activated",
        "state": "achieved",
        "done": 3,
        "total": 3,
        "label": "3 of 3 tasks",
        "percent": 100,
        "deadline_at": dt.datetime(2026, 3, 6, 9, tzinfo=dt.UTC),
    },
    "event": {"name": "Task Completed", "properties": {}},
    # Sent by a journey step (a team notice also names the step's journey).
    "journey": {"key": "setup-nudge", "name": "Setup nudge", "step": "nudge"},
    # The double opt-in confirmation email's own context.
    "confirm_url": "https://example.com/c/confirm/sample",
    "topics": ["marketing"],
    "links": {
        "unsubscribe": "https://example.com/c/u/sample",
        "preferences": "https://example.com/c/p/sample",
    },
}


class TemplateInvalid(ValueError):
    """A working copy that cannot be saved or activated; the message names locale and field."""


def variants_check(channel: str, default_locale: str, variants: Mapping[str, Any]) -> None:
    if not isinstance(variants, Mapping) or not variants:
        raise TemplateInvalid('variants: give at least one locale, e.g. {"en": {...}}')
    if default_locale not in variants:
        raise TemplateInvalid(f"variants: the default locale {default_locale!r} is missing")
    for locale, fields in variants.items():
        if not isinstance(fields, Mapping):
            raise TemplateInvalid(f"variants.{locale}: must be an object of fields")
        try:
            fields_validate(channel, fields)
            render(channel, fields, SAMPLE_CONTEXT)
        except RenderError as exc:
            raise TemplateInvalid(f"variants.{locale}.{exc.field}: {exc.message}") from exc


def template_save(
    *,
    key: str,
    name: str,
    channel: str,
    topic: Topic,
    default_locale: str,
    variants: Mapping[str, Any],
) -> Template:
    """Create or update a template's working copy (validated). An active template keeps
    sending its active version until it is activated again."""
    variants_check(channel, default_locale, variants)
    template, created = Template.objects.get_or_create(
        key=key,
        defaults={
            "name": name,
            "channel": channel,
            "topic": topic,
            "default_locale": default_locale,
            "variants": dict(variants),
        },
    )
    if not created:
        if template.channel != channel:
            raise TemplateInvalid("channel: a template's channel cannot change; make a new one")
        template.name, template.topic = name, topic
        template.default_locale, template.variants = default_locale, dict(variants)
        template.updated_at = timezone.now()
        template.save()
    return template


def template_activate(*, template_id: int, user_id: int | None = None) -> TemplateVersion:
    """Snapshot the working copy as the next immutable version and send with it from now
    on. Activating an unchanged working copy returns the active version."""
    with transaction.atomic():
        template = Template.objects.select_for_update().get(pk=template_id)
        variants_check(template.channel, template.default_locale, template.variants)
        active = template.active_version
        if (
            active is not None
            and active.variants == template.variants
            and active.default_locale == template.default_locale
            and template.status == TemplateStatus.ACTIVE
        ):
            return active
        number = (template.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = TemplateVersion.objects.create(
            template=template,
            number=number,
            channel=template.channel,
            default_locale=template.default_locale,
            variants=template.variants,
            created_by_id=user_id,
        )
        template.active_version, template.status = version, TemplateStatus.ACTIVE
        template.updated_at = timezone.now()
        template.save(update_fields=["active_version", "status", "updated_at"])
    return version


def template_archive(*, template_id: int) -> None:
    """Stop sending a template: requests naming it are refused from now on."""
    with transaction.atomic():  # through save(), for the audit trail
        template = Template.objects.select_for_update().get(pk=template_id)
        template.status, template.active_version = TemplateStatus.ARCHIVED, None
        template.updated_at = timezone.now()
        template.save(update_fields=["status", "active_version", "updated_at"])
    # templates_by_key forgets on post_save (config/cache.py).


@cached(Template, TemplateVersion, Topic)
def templates_by_key() -> dict[str, Template]:
    """Every template with its active version and topic, cached per process for the decision
    path (config/cache.py)."""
    return {t.key: t for t in Template.objects.select_related("active_version", "topic")}
