"""Admin for consent: topics, customers' subscriptions, the ledger, suppressions, region
policies, quiet hours and customers' own frequency choices.

Consent changes go through ``consent.services`` so the ledger always explains the state: a
subscription edited here is written by ``subscription_set`` with source "admin" and the
staff user as actor, a suppression is added by ``suppression_add`` and lifted by
``suppression_remove``. The ledger and customers' preferences are read-only. Lists over
per-customer tables never count the whole table and search with exact, indexed lookups.
"""

from __future__ import annotations

from typing import Any, Final

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from audit.admin import AuditTrailMixin
from config.admin_base import ModelAdmin
from consent.gdpr_admin import customer_admin_extend
from consent.models import (
    AddressKind,
    ConsentRecord,
    ConsentSource,
    Preference,
    QuietHours,
    RegionPolicy,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    Topic,
)
from consent.services import (
    Evidence,
    address_hash,
    subscription_set,
    suppression_add,
    suppression_remove,
)
from customers.admin import CappedCountPaginator
from customers.models import Customer
from customers.selectors import customer_ids_matching

HISTORY_SHOWN: Final = 50
#: What a person may lift here. A complaint or a legal hold stays until it is dealt with
#: outside Milepost; an erased customer's address stays suppressed for good.
LIFTABLE: Final = (
    SuppressionReason.UNSUBSCRIBE,
    SuppressionReason.MANUAL,
    SuppressionReason.HARD_BOUNCE,
)
_CUSTOMER_SEARCH_HELP: Final = "Exact customer user id, email or anonymous id."


def _customer_link(customer: Customer | None) -> SafeString | str:
    if customer is None:
        return "—"
    return format_html(
        '<a href="{}">{}</a>',
        reverse("admin:customers_customer_change", args=(customer.pk,)),
        customer,
    )


class _PerCustomerAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Rows per customer: searched by the customer with ``customer_ids_matching`` (exact,
    indexed lookups), newest first by primary key, never counted in full."""

    search_fields = ("customer__external_id",)  # listed for the search box
    search_help_text = _CUSTOMER_SEARCH_HELP
    ordering = ("-id",)
    sortable_by = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice is a scan per choice
    paginator = CappedCountPaginator

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(customer_id__in=customer_ids_matching(term=search_term)), False

    @admin.display(description="customer")
    def customer_link(self, row: Any) -> SafeString | str:
        return _customer_link(row.customer)


# --- Topics -------------------------------------------------------------------------------


@admin.register(Topic)
class TopicAdmin(AuditTrailMixin, ModelAdmin):  # type: ignore[type-arg]
    list_display = ("key", "name", "is_transactional", "is_active", "created_at")
    list_filter = ("is_transactional", "is_active")
    search_fields = ("key", "name")
    ordering = ("name",)
    fieldsets = (
        (None, {"fields": ("key", "name", "description", "is_active")}),
        (
            "Transactional",
            {
                "fields": ("is_transactional",),
                "description": "Only for messages a customer needs whether or not they want "
                "marketing: receipts, password resets, security and account notices. Marking "
                "a marketing topic transactional sends it to people who opted out.",
            },
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Subscriptions, links and the API name topics by key: fixed once made.
        return () if obj is None else ("key",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Subscriptions, the ledger and templates point here: a topic is switched off.
        return False


# --- Subscriptions -----------------------------------------------------------------------


class SubscriptionForm(forms.ModelForm):  # type: ignore[type-arg]
    evidence = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="How the customer asked for this, e.g. “asked by phone, ticket 4411”. Kept "
        "on the ledger row with your user.",
    )

    class Meta:
        model = Subscription
        fields = ("customer", "channel", "topic", "status")
        help_texts = {
            "status": "Opted in or out is the customer's explicit choice; unknown follows "
            "the region's policy. An email opt-in in a double opt-in region stays awaiting "
            "confirmation until the customer confirms the email they are sent.",
        }


@admin.register(Subscription)
class SubscriptionAdmin(_PerCustomerAdmin):
    form = SubscriptionForm
    list_display = ("customer_link", "channel", "topic", "status", "updated_at")
    list_filter = ("channel", "topic", "status")
    list_select_related = ("customer", "topic")
    raw_id_fields = ("customer",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("customer", "channel", "topic", "status", "evidence")
        # Evidence is a form field: a viewer, who gets no form, has none to show.
        evidence = ("evidence",) if self.has_change_permission(request, obj) else ()
        return ("customer_link", "channel", "topic", "status", *evidence, "updated_at", "history")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Only the status changes: another customer, channel or topic is another subscription.
        if obj is None:
            return ()
        return ("customer_link", "channel", "topic", "updated_at", "history")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting would leave ledger rows that explain nothing; set the status instead.
        return False

    @admin.display(description=f"ledger (latest {HISTORY_SHOWN})")
    def history(self, subscription: Subscription) -> str:
        rows = (
            ConsentRecord.objects.filter(
                Q(topic=subscription.topic) | Q(topic__isnull=True),
                customer_id=subscription.customer_id,
                channel=subscription.channel,
            )
            .select_related("actor", "topic")
            .order_by("-created_at", "-id")[:HISTORY_SHOWN]
        )
        return render_to_string("admin/consent/subscription/history.html", {"rows": rows})

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        wanted = form.cleaned_data["status"]
        changed = subscription_set(
            customer_id=obj.customer_id,
            channel=obj.channel,
            topic_keys=[obj.topic.key],
            status=wanted,
            evidence=Evidence(
                source=ConsentSource.ADMIN,
                wording=form.cleaned_data.get("evidence", ""),
                actor_id=request.user.pk,
            ),
        )
        stored = Subscription.objects.get(
            customer_id=obj.customer_id, channel=obj.channel, topic=obj.topic
        )
        # The form's instance becomes the stored row, so the admin's log and redirect use it.
        obj.pk = stored.pk
        obj.refresh_from_db()
        obj._state.adding = False
        if not changed:
            messages.info(request, f"No change: already {stored.get_status_display().lower()}.")
        elif stored.status == SubscriptionStatus.PENDING and wanted != stored.status:
            messages.warning(
                request,
                "The customer's region requires double opt-in: the subscription awaits "
                "confirmation, and a confirmation email was requested.",
            )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return  # the service stored everything


# --- The ledger ---------------------------------------------------------------------------


@admin.register(ConsentRecord)
class ConsentRecordAdmin(_PerCustomerAdmin):
    """The append-only ledger: shown, never added, edited or deleted here."""

    list_display = (
        "created_at",
        "customer_link",
        "channel",
        "topic_label",
        "status",
        "source",
        "actor",
    )
    list_filter = ("source", "channel")
    list_select_related = ("customer", "topic", "actor")
    fields = (
        "customer_link",
        "channel",
        "topic_label",
        "status",
        "source",
        "actor",
        "ip_address",
        "user_agent",
        "wording",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="topic")
    def topic_label(self, record: ConsentRecord) -> str:
        return "every marketing topic" if record.topic is None else str(record.topic)


# --- Suppressions -------------------------------------------------------------------------


class SuppressionAddForm(forms.ModelForm):  # type: ignore[type-arg]
    address = forms.CharField(
        max_length=512,
        help_text="The email address, E.164 phone number (+14155550100) or device token.",
    )
    reason = forms.ChoiceField(
        choices=[(c.value, c.label) for c in SuppressionReason if c != SuppressionReason.ERASED],
        help_text="A complaint or a legal hold cannot be lifted here once added. An address "
        "already suppressed keeps its reason unless this one outranks it.",
    )

    class Meta:
        model = Suppression
        fields = ("kind", "address", "reason", "note")
        help_texts = {"note": "Why, for whoever reads this later (ticket, request)."}


@admin.register(Suppression)
class SuppressionAdmin(ModelAdmin):  # type: ignore[type-arg]
    form = SuppressionAddForm
    list_display = ("address_label", "kind", "reason", "note", "created_by", "created_at")
    list_filter = ("kind", "reason")
    list_select_related = ("created_by",)
    search_fields = ("address",)
    search_help_text = "An exact email address, phone number or device token."
    ordering = ("-id",)
    sortable_by = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice is a scan per choice
    paginator = CappedCountPaginator
    actions = ("lift",)
    fields = ("kind", "address_label", "reason", "note", "created_by", "created_at")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("kind", "address", "reason", "note") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a suppression is added or lifted, never edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # lifting is the "lift" action, which keeps complaints and legal holds

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("consent.delete_suppression"))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Suppression], search_term: str
    ) -> tuple[QuerySet[Suppression], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # By hash, so an erased customer's address is found too.
        found = Q()
        for kind in AddressKind.values:
            found |= Q(kind=kind, address_hash=address_hash(kind, term))
        return queryset.filter(found), False

    @admin.display(description="address")
    def address_label(self, suppression: Suppression) -> str:
        return suppression.address or "erased"

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        data = form.cleaned_data
        existed = Suppression.objects.filter(
            kind=data["kind"], address_hash=address_hash(data["kind"], data["address"])
        ).first()
        stored = suppression_add(
            kind=data["kind"],
            address=data["address"],
            reason=data["reason"],
            note=data.get("note", ""),
            created_by_id=request.user.pk,
        )
        obj.pk = stored.pk
        obj.refresh_from_db()
        obj._state.adding = False
        if existed is not None:
            messages.info(
                request,
                f"Already suppressed (since {existed.created_at:%Y-%m-%d}); its reason is now "
                f"“{stored.get_reason_display()}”.",
            )

    @admin.action(
        description="Lift selected suppressions (not complaints or legal holds)",
        permissions=["lift"],
    )
    def lift(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> None:
        lifted, kept, erased = [], 0, 0
        for suppression in queryset:
            if suppression.reason not in LIFTABLE:
                kept += 1
            elif not suppression.address:
                erased += 1  # without the address there is nothing to match it by
            elif suppression_remove(
                kind=suppression.kind, address=suppression.address, reasons=LIFTABLE
            ):
                lifted.append(suppression)
        if lifted:
            # Django logs a single deletion with a list as well; the rows are gone by now.
            self.log_deletions(request, lifted)  # type: ignore[arg-type]
        text = ngettext("%d suppression lifted.", "%d suppressions lifted.", len(lifted)) % len(
            lifted
        )
        if kept:
            text += (
                " "
                + ngettext(
                    "%d skipped: complaints, legal holds and erased customers are never lifted "
                    "here.",
                    "%d skipped: complaints, legal holds and erased customers are never lifted "
                    "here.",
                    kept,
                )
                % kept
            )
        if erased:
            text += (
                " "
                + ngettext(
                    "%d skipped: its address was erased.",
                    "%d skipped: their addresses were erased.",
                    erased,
                )
                % erased
            )
        level = messages.WARNING if kept or erased or not lifted else messages.SUCCESS
        self.message_user(request, text, level)


# --- Region policies and quiet hours ------------------------------------------------------


@admin.register(RegionPolicy)
class RegionPolicyAdmin(AuditTrailMixin, ModelAdmin):  # type: ignore[type-arg]
    list_display = ("region", "mode", "requires_double_opt_in")
    list_filter = ("mode", "requires_double_opt_in")
    search_fields = ("region",)
    fieldsets = (
        (
            None,
            {
                "fields": ("region", "mode", "requires_double_opt_in"),
                "description": "How “unknown” consent reads for customers of a region. A "
                "region without a row follows the default mode (the CONSENT_DEFAULT_MODE "
                "setting). An explicit opt-in or opt-out always wins.",
            },
        ),
    )


class QuietHoursForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = QuietHours
        fields = ("channel", "starts_at", "ends_at", "is_active")
        help_texts = {
            "channel": "One window per channel.",
            "is_active": "Switched-off windows are ignored.",
        }

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if starts is not None and starts == ends:
            self.add_error("ends_at", "The window must end at another time than it starts.")
        return data


@admin.register(QuietHours)
class QuietHoursAdmin(AuditTrailMixin, ModelAdmin):  # type: ignore[type-arg]
    form = QuietHoursForm
    list_display = ("channel", "window", "is_active")
    list_filter = ("is_active",)
    fieldsets = (
        (
            None,
            {
                "fields": ("channel", "starts_at", "ends_at", "is_active"),
                "description": "Marketing on the channel is not sent inside the window, in "
                "each customer's own time zone (UTC when unknown); a message that falls "
                "inside is deferred to the window's end. Transactional messages are not held.",
            },
        ),
    )

    @admin.display(description="window (customer's local time)")
    def window(self, quiet: QuietHours) -> str:
        spans = " (over midnight)" if quiet.starts_at > quiet.ends_at else ""
        return f"{quiet.starts_at:%H:%M} to {quiet.ends_at:%H:%M}{spans}"


# --- Customers' own frequency choices ----------------------------------------------------


@admin.register(Preference)
class PreferenceAdmin(_PerCustomerAdmin):
    """Set by customers on the preference centre: shown, not edited for them."""

    list_display = ("customer_link", "max_marketing", "period_days", "paused_until", "updated_at")
    list_select_related = ("customer",)
    fields = ("customer_link", "max_marketing", "period_days", "paused_until", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# The GDPR actions live with consent (which owns GDPR) but act on the customer admin.
customer_admin_extend()
