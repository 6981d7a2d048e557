"""Admin for the customer data model: look people up, read their timeline, manage keys.

Customers, accounts and events arrive through ingestion, so nothing here adds them and
events are read-only. List pages stay cheap on big tables: exact, indexed search; ordering
by primary key; counts that stop at ``CappedCountPaginator.CAP``. Write keys and API tokens
are for superusers only; their plain key is shown once, in a message, and never stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import cached_property
from typing import Any, Final, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import ngettext

from audit.admin import AuditTrailMixin
from config.admin_base import ModelAdmin, TabularInline
from customers.contact import InvalidContact, phone_e164, time_zone_check
from customers.models import (
    Account,
    ApiToken,
    Customer,
    Device,
    DevicePlatform,
    Event,
    Identity,
    IdentityKind,
    Source,
)
from customers.selectors import customer_events, customer_ids_matching, events_matching
from customers.services import (
    api_token_create,
    api_tokens_deactivate,
    devices_deactivate,
    source_create,
    sources_deactivate,
)

TIMELINE_LENGTH = 50
MEMBERS_SHOWN = 50
_PROPERTIES_SHOWN = 4
_VALUE_CHARS = 60


class CappedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Counts at most ``CAP + 1`` rows: an exact ``COUNT(*)`` of a big table is a full scan."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        rows = cast(QuerySet[Any], self.object_list)  # the admin always pages a queryset
        return rows.order_by()[: self.CAP + 1].count()


# --- Customers -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TimelineRow:
    occurred_at: dt.datetime
    type: str
    name: str
    properties: list[tuple[str, str]]
    more_properties: int


def _timeline_row(event: Event) -> TimelineRow:
    properties = event.properties if isinstance(event.properties, dict) else {}
    shown = [
        (str(key), _short(value)) for key, value in list(properties.items())[:_PROPERTIES_SHOWN]
    ]
    return TimelineRow(
        occurred_at=event.occurred_at,
        type=event.get_type_display(),
        name=event.name,
        properties=shown,
        more_properties=max(len(properties) - _PROPERTIES_SHOWN, 0),
    )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _VALUE_CHARS else f"{text[: _VALUE_CHARS - 1]}…"


class CustomerForm(forms.ModelForm):  # type: ignore[type-arg]
    """Holds hand edits to the rules ingestion applies: IANA zones and E.164 phones."""

    class Meta:
        model = Customer
        fields = ("email", "phone", "account", "status", "plan", "region", "time_zone", "locale")

    def clean_time_zone(self) -> str:
        zone: str = self.cleaned_data["time_zone"]
        try:
            return time_zone_check(zone) if zone else zone
        except InvalidContact as exc:
            raise forms.ValidationError(f"{exc}, e.g. Europe/Berlin.") from exc

    def clean_phone(self) -> str:
        phone: str = self.cleaned_data["phone"]
        try:
            return phone_e164(phone) if phone else phone
        except InvalidContact as exc:
            raise forms.ValidationError(str(exc)) from exc


class IdentityInline(TabularInline):  # type: ignore[type-arg]
    model = Identity
    fields = ("kind", "value", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeviceInline(TabularInline):  # type: ignore[type-arg]
    model = Device
    fields = ("platform", "token", "is_active", "created_at", "last_seen")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(ModelAdmin):  # type: ignore[type-arg]
    form = CustomerForm
    list_display = (
        "label",
        "email",
        "account",
        "plan",
        "region",
        "status",
        "lifecycle_stage",
        "last_seen",
    )
    list_filter = ("plan", "region", "status", "lifecycle_stage")
    list_select_related = ("account",)
    # Answered by get_search_results with exact, indexed lookups; listed for the search box.
    search_fields = ("external_id", "email", "phone", "identities__value")
    search_help_text = "Exact user id, email, phone (+14155550100) or anonymous id."
    autocomplete_fields = ("account",)
    ordering = ("-id",)
    sortable_by = ("label", "email", "plan", "region", "lifecycle_stage")
    show_full_result_count = False
    paginator = CappedCountPaginator
    inlines = (IdentityInline, DeviceInline)
    readonly_fields = (
        "external_id",
        "lifecycle_stage",
        "traits",
        "first_seen",
        "last_seen",
        "created_at",
        "updated_at",
        "recent_events",
    )
    fieldsets = (
        (None, {"fields": ("external_id", "email", "phone", "account", "status")}),
        ("Profile", {"fields": ("plan", "region", "time_zone", "locale", "traits")}),
        (
            "Lifecycle",
            {"fields": ("lifecycle_stage", "created_at", "first_seen", "last_seen", "updated_at")},
        ),
        ("Recent events", {"fields": ("recent_events",)}),
    )

    @admin.display(description="customer", ordering="external_id")
    def label(self, customer: Customer) -> str:
        return customer.external_id or f"anonymous #{customer.pk}"

    @admin.display(description=f"latest {TIMELINE_LENGTH} events")
    def recent_events(self, customer: Customer) -> str:
        # Kept on the object: the admin theme may ask for a readonly field more than once.
        shown = customer.__dict__.get("_recent_events_html")
        if not isinstance(shown, str):
            events = customer_events(customer_id=customer.pk)[:TIMELINE_LENGTH]
            shown = render_to_string(
                "admin/customers/customer/events_timeline.html",
                {"rows": [_timeline_row(event) for event in events]},
            )
            customer.__dict__["_recent_events_html"] = shown
        return shown

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Customer], search_term: str
    ) -> tuple[QuerySet[Customer], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(pk__in=customer_ids_matching(term=search_term)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Customers come from ingestion.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Their events are kept (PROTECT); erasing a person is the consent app's GDPR erase.
        return False


# --- Accounts ------------------------------------------------------------------------------


@admin.register(Account)
class AccountAdmin(ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "external_id",
        "name",
        "plan",
        "region",
        "status",
        "customers_count",
        "created_at",
    )
    list_filter = ("plan", "region", "status")
    search_fields = ("external_id", "name")
    ordering = ("-id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    readonly_fields = ("external_id", "traits", "created_at", "updated_at", "members")
    fields = (
        "external_id",
        "name",
        "plan",
        "region",
        "status",
        "traits",
        "created_at",
        "updated_at",
        "members",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Account]:
        # A correlated count runs for the rows on the page only, not for every account.
        members = (
            Customer.objects.filter(account=OuterRef("pk"))
            .order_by()
            .values("account")
            .annotate(total=Count("*"))
            .values("total")
        )
        accounts: QuerySet[Account] = super().get_queryset(request)
        return accounts.annotate(
            customers_count=Coalesce(Subquery(members, output_field=IntegerField()), Value(0))
        )

    @admin.display(description="customers", ordering="customers_count")
    def customers_count(self, account: Account) -> int:
        return int(getattr(account, "customers_count", 0))

    @admin.display(description=f"members (first {MEMBERS_SHOWN})")
    def members(self, account: Account) -> str:
        shown = list(account.customers.order_by("id")[:MEMBERS_SHOWN])
        return render_to_string(
            "admin/customers/account/members.html",
            {
                "members": [
                    (reverse("admin:customers_customer_change", args=(member.pk,)), member)
                    for member in shown
                ],
                "total": self.customers_count(account),
                "all_url": reverse("admin:customers_customer_changelist")
                + f"?account__id__exact={account.pk}",
            },
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Accounts come from group calls.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Events, identities, devices -----------------------------------------------------------


class _ReadOnlyAdmin(ModelAdmin):  # type: ignore[type-arg]
    show_full_result_count = False
    paginator = CappedCountPaginator
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(_ReadOnlyAdmin):
    """Events are append-only: nobody adds, edits or deletes them here."""

    list_display = ("occurred_at", "type", "name", "customer", "account", "source", "message_id")
    list_filter = ("type", "source")
    list_select_related = ("customer", "account", "source")
    search_fields = ("message_id", "customer__external_id")
    search_help_text = "Exact message id, or a customer's user id, email or anonymous id."
    # Sorting a big table by an unindexed column is a full sort; newest (by id) is the order.
    sortable_by = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        if not search_term.strip():
            return queryset, False
        return events_matching(term=search_term, events=queryset), False


@admin.register(Identity)
class IdentityAdmin(_ReadOnlyAdmin):
    list_display = ("value", "kind", "customer", "created_at")
    list_filter = ("kind",)
    list_select_related = ("customer",)
    search_fields = ("value",)
    search_help_text = "Exact anonymous id or former user id."
    sortable_by = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Identity], search_term: str
    ) -> tuple[QuerySet[Identity], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(kind__in=IdentityKind.values, value=term), False


@admin.register(Device)
class DeviceAdmin(_ReadOnlyAdmin):
    list_display = ("__str__", "platform", "customer", "is_active", "last_seen")
    list_filter = ("platform", "is_active")
    list_select_related = ("customer",)
    search_fields = ("token",)
    search_help_text = "Exact push token, or its customer's user id, email or anonymous id."
    sortable_by = ()
    actions = ("deactivate",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Device], search_term: str
    ) -> tuple[QuerySet[Device], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        by_token = queryset.filter(platform__in=DevicePlatform.values, token=term)
        by_customer = queryset.filter(customer_id__in=customer_ids_matching(term=term))
        return by_token | by_customer, False

    def has_deactivate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("customers.change_device"))

    @admin.action(description="Deactivate selected devices", permissions=["deactivate"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        count = devices_deactivate(device_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(
            request,
            ngettext("%d device deactivated.", "%d devices deactivated.", count) % count,
            messages.SUCCESS,
        )


# --- Write keys and API tokens -------------------------------------------------------------


#: The role whose members manage keys (roles.definitions); permissions granted one by one
#: to anybody else do not open keys.
KEY_MANAGERS: Final = "Admin"


def manages_keys(user: Any) -> bool:
    """Nobody but a superuser or a member of the Admin role manages write keys and tokens.
    Remembered on the user object for the request, as Django's permission cache is."""
    if not user.is_active or not user.is_staff:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_manages_keys", None)
    if cached is None:
        cached = user.groups.filter(name=KEY_MANAGERS).exists()
        user._manages_keys = cached
    return bool(cached)


class _KeyAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Only ``manages_keys`` users see or manage keys. Keys are deactivated, never deleted."""

    add_form: type[forms.ModelForm]  # type: ignore[type-arg]
    add_fields: tuple[str, ...] = ("name",)
    key_readonly_fields: tuple[str, ...] = ()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return manages_keys(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return manages_keys(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return manages_keys(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return manages_keys(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fields if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.key_readonly_fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            # Only a name (and a user): the key itself is made by the service on save.
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change, **kwargs)

    def _created(self, request: HttpRequest, obj: Any, key_id: int, key: str, what: str) -> None:
        # The form's instance becomes the stored row, so the admin's log and redirect use it.
        obj.pk = key_id
        obj.refresh_from_db()
        obj._state.adding = False
        messages.success(
            request,
            f"{what} for “{obj.name}”, shown this once (only its hash is stored): {key}",
        )


class SourceAddForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Source
        fields = ("name",)


@admin.register(Source)
class SourceAdmin(AuditTrailMixin, _KeyAdmin):
    add_form = SourceAddForm
    list_display = ("name", "key_prefix", "is_active", "created_at", "created_by")
    list_filter = ("is_active",)
    search_fields = ("name", "key_prefix")
    fields = ("name", "is_active", "key_prefix", "key_hash", "created_at", "created_by")
    key_readonly_fields = ("key_prefix", "key_hash", "created_at", "created_by")
    actions = ("deactivate",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        user = request.user if isinstance(request.user, AbstractBaseUser) else None
        created = source_create(name=form.cleaned_data["name"], created_by=user)
        self._created(request, obj, created.id, created.key, "Write key")

    @admin.action(description="Deactivate selected write keys", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        count = sources_deactivate(source_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(
            request,
            ngettext("%d write key deactivated.", "%d write keys deactivated.", count) % count,
            messages.SUCCESS,
        )


class ApiTokenAddForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = ApiToken
        fields = ("user", "name")


@admin.register(ApiToken)
class ApiTokenAdmin(AuditTrailMixin, _KeyAdmin):
    add_form = ApiTokenAddForm
    add_fields = ("user", "name")
    list_display = ("name", "user", "key_prefix", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    list_select_related = ("user",)
    search_fields = ("name", "key_prefix", "user__username")
    raw_id_fields = ("user",)
    fields = (
        "name",
        "user",
        "is_active",
        "key_prefix",
        "key_hash",
        "created_at",
        "last_used_at",
    )
    key_readonly_fields = ("user", "key_prefix", "key_hash", "created_at", "last_used_at")
    actions = ("deactivate",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = api_token_create(user=form.cleaned_data["user"], name=form.cleaned_data["name"])
        self._created(request, obj, created.id, created.key, "API token")

    @admin.action(description="Deactivate selected API tokens", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = api_tokens_deactivate(token_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(
            request,
            ngettext("%d API token deactivated.", "%d API tokens deactivated.", count) % count,
            messages.SUCCESS,
        )
