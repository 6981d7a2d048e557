"""The template editor: the working copy saved through ``template_save``, a live preview,
Activate / Archive / Send test buttons (POST-only views calling one service each) and the
read-only version history."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html

from audit.admin import AuditTrailMixin
from config.admin_buttons import ServiceButtonsMixin
from customers.models import Customer
from messaging.admin.display import rendered_panel
from messaging.explain import message_reason
from messaging.models import Message, Template, TemplateStatus
from messaging.rendering import CHANNEL_FIELDS, REQUIRED_FIELDS, RenderError, render
from messaging.services import MessagingError, SendRequest, messages_request, render_context
from messaging.templating import (
    SAMPLE_CONTEXT,
    TemplateInvalid,
    template_activate,
    template_archive,
    template_save,
    variants_check,
)
from milestones.forms import PrettyJSONField

VERSIONS_SHOWN: Final = 50
_EMPTY: Final = "—"
#: What a preview for a real customer (and a test send) takes from the sample: the request's
#: own data, which only a journey would supply.
_SAMPLE_EXTRA: Final = ("milestone", "event")


def _fields_help() -> str:
    def field(channel: str, name: str) -> str:
        return f"{name}*" if name in REQUIRED_FIELDS[channel] else name

    channels = "; ".join(
        f"{channel}: {', '.join(field(channel, name) for name in names)}"
        for channel, names in CHANNEL_FIELDS.items()
    )
    example = '{"en": {"subject": "Hi {{ customer.first_name | default(\'there\') }}", ...}}'
    # The admin shows help texts unescaped.
    return escape(
        f"One object per locale, each with the channel's fields, e.g. {example}. "
        f"Fields ({channels}; * required): an email's text is made from its html when blank, "
        "push data is a JSON object. Jinja2: optional data needs | default(...). Every locale "
        "is rendered against a sample customer on save, so a broken template is refused here, "
        "never found at send time."
    )


class TemplateForm(forms.ModelForm):  # type: ignore[type-arg]
    """Validates the working copy exactly as ``template_save`` will, with the message on the
    variants field."""

    variants = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"class": "template-json", "rows": 18, "spellcheck": "false"}),
        help_text=_fields_help(),
    )

    class Meta:
        model = Template
        fields = ("key", "name", "channel", "topic", "default_locale", "variants")
        help_texts = {
            "key": "How journeys and the API ask for this template, e.g. welcome-email. "
            "Fixed once made.",
            "name": "What marketers call it in the admin.",
            "channel": "Where it is sent. Fixed once made: make another template for another "
            "channel.",
            "topic": "What it is about: the customer's consent for this topic and channel is "
            "checked before each send (a transactional topic needs none).",
            "default_locale": "The variant used when none matches the customer's locale, e.g. en.",
        }

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        channel = data.get("channel") or self.instance.channel
        locale = data.get("default_locale")
        if channel and locale and "variants" not in self.errors:
            try:
                variants_check(channel, locale, data.get("variants"))  # type: ignore[arg-type]
            except TemplateInvalid as exc:
                self.add_error("variants", str(exc))
        return data


@dataclasses.dataclass(frozen=True, slots=True)
class _Button:
    label: str
    url: str
    help: str


@dataclasses.dataclass(frozen=True, slots=True)
class Preview:
    audience: str  # whom it was rendered for, in words
    locale: str
    panel: str  # the rendered fields, or the error
    notice: str = ""


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _customer_context(template: Template, customer: Customer) -> dict[str, Any]:
    """What a send to ``customer`` would see, with the sample's request data and links: a
    preview must not mint working unsubscribe links for a real person."""
    message = Message(channel=template.channel, topic=template.topic)
    extra = {name: SAMPLE_CONTEXT[name] for name in _SAMPLE_EXTRA}
    context = render_context(customer, message, extra)
    context["links"] = SAMPLE_CONTEXT["links"]
    return context


def _customer_from(value: str) -> tuple[Customer | None, str]:
    """The customer a ``preview_customer`` value names, or None and why not."""
    value = value.strip()
    if not value:
        return None, ""
    customer = None
    if value.isdigit():
        customer = Customer.objects.select_related("account").filter(pk=int(value)).first()
    if customer is None:
        return None, f"No customer with id {value}: showing the sample customer instead."
    return customer, ""


def template_preview(template: Template, customer_param: str) -> Preview:
    """The saved working copy's default-locale variant rendered for the sample customer or
    the customer named by ``customer_param``."""
    customer, notice = _customer_from(customer_param)
    locale = template.default_locale
    audience = "the sample customer (Ada)" if customer is None else f"customer {customer}"
    context = SAMPLE_CONTEXT if customer is None else _customer_context(template, customer)
    fields = template.variants.get(locale) if isinstance(template.variants, dict) else None
    try:
        if not isinstance(fields, Mapping):
            raise RenderError("variants", f"there is no variant for the default locale {locale!r}")
        rendered = render(template.channel, fields, context)
    except RenderError as exc:
        return Preview(audience, locale, rendered_panel(template.channel, {}, error=exc), notice)
    return Preview(audience, locale, rendered_panel(template.channel, rendered), notice)


@admin.register(Template)
class TemplateAdmin(AuditTrailMixin, ServiceButtonsMixin):
    form = TemplateForm
    list_display = ("key", "name", "channel", "topic", "status", "version_label", "updated_at")
    list_filter = ("status", "channel", "topic")
    list_select_related = ("topic", "active_version")
    search_fields = ("key", "name")
    ordering = ("name",)
    readonly_fields = ("status", "version_label", "version_history", "created_at", "updated_at")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        content = ("Content", {"fields": ("default_locale", "variants")})
        if obj is None:
            return ((None, {"fields": ("key", "name", "channel", "topic")}), content)
        return (
            (None, {"fields": ("key", "name", "channel", "topic", "status", "version_label")}),
            content,
            ("Versions", {"fields": ("version_history", "created_at", "updated_at")}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A key names the template in journeys; a channel decides its fields.
        return self.readonly_fields if obj is None else ("key", "channel", *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Versions and the messages sent with them point here: a template is archived.
        return False

    @admin.display(description="active version")
    def version_label(self, template: Template) -> str:
        version = template.active_version
        return _EMPTY if version is None else f"v{version.number}"

    @admin.display(description="version history")
    def version_history(self, template: Template) -> str:
        versions = template.versions.select_related("created_by").order_by("-number")
        return render_to_string(
            "admin/messaging/template/versions.html",
            {
                "rows": [
                    (
                        version,
                        version.pk == template.active_version_id,
                        json.dumps(version.variants, indent=2, ensure_ascii=False),
                    )
                    for version in versions[:VERSIONS_SHOWN]
                ],
                "shown": VERSIONS_SHOWN,
            },
        )

    # --- saving through the service

    def save_model(self, request: HttpRequest, obj: Template, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = template_save(
            key=obj.key if change else data["key"],
            name=data["name"],
            channel=obj.channel if change else data["channel"],
            topic=data["topic"],
            default_locale=data["default_locale"],
            variants=data["variants"],
        )
        # The form's instance becomes the stored row, so the admin's log and redirect use it.
        obj.pk = saved.pk
        obj.refresh_from_db()
        obj._state.adding = False
        if not change:
            messages.info(request, "Saved as a draft: nothing is sent with it until Activate.")
        elif saved.active_version is not None and (
            saved.active_version.variants != saved.variants
            or saved.active_version.default_locale != saved.default_locale
        ):
            messages.warning(
                request,
                f"Saved the working copy. Sends keep using v{saved.active_version.number} "
                "until you press Activate.",
            )

    # --- the change page: buttons, preview, send test

    button_views = ("activate", "archive", "send_test")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        template = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if template is not None:
            preview_customer = request.GET.get("preview_customer", "")
            context["template_preview"] = template_preview(template, preview_customer)
            context["preview_customer"] = preview_customer
            if super().has_change_permission(request, template):
                context["template_buttons"] = self._buttons(template)
                if template.status == TemplateStatus.ACTIVE:
                    context["send_test_url"] = self._url("send_test", template)
        return super().change_view(request, object_id, form_url, context)

    def _url(self, name: str, template: Template) -> str:
        return reverse(f"admin:messaging_template_{name}", args=(template.pk,))

    def _buttons(self, template: Template) -> list[_Button]:
        buttons = []
        active = template.active_version
        changed = active is None or (active.variants, active.default_locale) != (
            template.variants,
            template.default_locale,
        )
        if template.status != TemplateStatus.ACTIVE or changed:
            buttons.append(
                _Button(
                    "Activate",
                    self._url("activate", template),
                    "Snapshot the saved working copy as the next version and send with it",
                )
            )
        if template.status != TemplateStatus.ARCHIVED:
            buttons.append(
                _Button(
                    "Archive",
                    self._url("archive", template),
                    "Stop sending: requests naming it are refused; history is kept",
                )
            )
        return buttons

    def _target(self, request: HttpRequest, object_id: str) -> Template:
        """The template a button acts on, after the permission check."""
        if not super().has_change_permission(request):
            raise PermissionDenied
        template: Template | None = self.get_object(request, unquote(object_id))
        if template is None:
            raise Http404("No such template.")
        return template

    def _back(self, template: Template) -> HttpResponseRedirect:
        return HttpResponseRedirect(self._url("change", template))

    def activate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self._target(request, object_id)
        before = template.active_version_id
        try:
            version = template_activate(template_id=template.pk, user_id=request.user.pk)
        except TemplateInvalid as exc:
            messages.error(request, f"Not activated: {exc}")
        else:
            if version.pk == before:
                messages.info(request, f"Nothing new to activate: v{version.number} is live.")
            else:
                messages.success(
                    request, f"Activated v{version.number} of “{template.name}”: new sends use it."
                )
        return self._back(template)

    def archive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self._target(request, object_id)
        template_archive(template_id=template.pk)
        messages.success(
            request,
            f"Archived “{template.name}”: requests naming it are refused from now on; messages "
            "already queued still go out. Activate makes it live again.",
        )
        return self._back(template)

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self._target(request, object_id)
        value = request.POST.get("customer_id", "").strip()
        customer = Customer.objects.filter(pk=int(value)).first() if value.isdigit() else None
        if customer is None:
            messages.error(request, f"No test sent: no customer with id “{value}”.")
            return self._back(template)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
        ask = SendRequest(
            key=f"test:{template.key}:{customer.pk}:{stamp}",
            customer_id=customer.pk,
            templates=(template.key,),
            context=_json_safe({name: SAMPLE_CONTEXT[name] for name in _SAMPLE_EXTRA}),
        )
        try:
            (message_id,) = messages_request([ask])
        except MessagingError as exc:
            messages.error(request, f"No test sent: {exc}.")
            return self._back(template)
        messages.success(request, _send_test_result(Message.objects.get(pk=message_id)))
        return self._back(template)


def _send_test_result(message: Message) -> str:
    outcome = message.get_status_display().lower()
    why = message_reason(message.reason, message.explanation, error=message.error)
    why = f" {why}" if why else ""
    return format_html(
        'Test <a href="{}">message {}</a> to {}: {}.{} It went through the real delivery '
        "policy (consent, suppressions, caps, quiet hours) and counts towards the "
        "customer's caps.",
        reverse("admin:messaging_message_change", args=(message.pk,)),
        message.pk,
        message.customer or "an erased customer",
        outcome,
        why,
    )
