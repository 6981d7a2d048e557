"""The customer page as a 360 view: the page support opens when a customer asks "why did I get
this?" (or "why didn't I?").

``customers`` must not import the apps above it, so, as ``milestones.admin`` does for its
Milestones section, this module re-registers the customer admin with a subclass that adds the
account link and the Consent, Journeys and Messages sections. Their data is read once per page
by ``audience.selectors.customer_360``; the Milestones and Recent events sections stay as
their apps render them. Each added section shows only to users who may view its rows in the
owning app's admin (where its links lead).
"""

from __future__ import annotations

from typing import Any, Final

from django.contrib import admin
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from audience.rows import Customer360
from audience.selectors import (
    CHANNELS,
    ENROLLMENTS_SHOWN,
    MESSAGES_SHOWN,
    RUNS_SHOWN,
    customer_360,
)
from consent.gdpr_admin import customer_admin_extend
from customers.models import Customer
from milestones.admin import CustomerMilestonesAdmin

#: Where the read model is kept on the customer object for the rest of its request.
_VIEW_ATTRIBUTE: Final = "_audience_360"
#: Each section, with the permission that lets a user read its rows in their own admin.
_SECTIONS: Final = (
    ("Consent", "consent_matrix", "consent.view_subscription"),
    ("Journeys", "journey_enrollments", "journeys.view_enrollment"),
    ("Messages", "recent_messages", "messaging.view_message"),
)


def customer_view(customer: Customer) -> Customer360:
    """The customer's 360, read on first use and kept on the object: the page's sections are
    rendered one by one, from one read."""
    found = customer.__dict__.get(_VIEW_ATTRIBUTE)
    if not isinstance(found, Customer360):
        found = customer_360(customer.pk)
        customer.__dict__[_VIEW_ATTRIBUTE] = found
    return found


def _changelist(name: str, customer_id: int) -> str:
    return f"{reverse(f'admin:{name}_changelist')}?customer__id__exact={customer_id}"


def _with_account_link(fieldset: Any) -> Any:
    title, options = fieldset
    fields = list(options.get("fields", ()))
    if "account" not in fields or "account_link" in fields:
        return fieldset
    fields.insert(fields.index("account") + 1, "account_link")
    return (title, {**options, "fields": tuple(fields)})


def with_sections(fieldsets: Any, sections: list[str], *, after: str = "Milestones") -> list[Any]:
    """The fieldsets with the account link beside the account and the named 360 sections
    after the one titled ``after`` (or last): the sections before it keep their places."""
    result = [_with_account_link(fieldset) for fieldset in fieldsets]
    titles = [fieldset[0] for fieldset in result]
    at = titles.index(after) + 1 if after in titles else len(result)
    added = [(title, {"fields": (field,)}) for title, field, _ in _SECTIONS if title in sections]
    return [*result[:at], *added, *result[at:]]


class CustomerAdmin360(CustomerMilestonesAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        added = ("account_link", "consent_matrix", "journey_enrollments", "recent_messages")
        return (*super().get_readonly_fields(request, obj), *added)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # Consent, journeys and messages are other apps' data: shown to those who may read
        # them there (and follow the section's links).
        allowed = [title for title, _, perm in _SECTIONS if request.user.has_perm(perm)]
        return with_sections(super().get_fieldsets(request, obj), allowed)

    @admin.display(description="account page")
    def account_link(self, customer: Customer) -> str:
        return render_to_string(
            "admin/audience/account.html", {"account": customer_view(customer).account}
        )

    @admin.display(description="consent by topic and channel")
    def consent_matrix(self, customer: Customer) -> str:
        view = customer_view(customer)
        return render_to_string(
            "admin/audience/consent.html",
            {
                "consent": view.consent,
                "channel_count": len(CHANNELS),
                "history_url": _changelist("consent_consentrecord", customer.pk),
                "subscriptions_url": _changelist("consent_subscription", customer.pk),
            },
        )

    @admin.display(description=f"latest {ENROLLMENTS_SHOWN} enrollments")
    def journey_enrollments(self, customer: Customer) -> str:
        view = customer_view(customer)
        return render_to_string(
            "admin/audience/journeys.html",
            {
                "enrollments": view.enrollments,
                "more": view.more_enrollments,
                "runs_shown": RUNS_SHOWN,
                "all_url": _changelist("journeys_enrollment", customer.pk),
            },
        )

    @admin.display(description=f"latest {MESSAGES_SHOWN} messages")
    def recent_messages(self, customer: Customer) -> str:
        view = customer_view(customer)
        return render_to_string(
            "admin/audience/messages.html",
            {
                "message_rows": view.messages,
                "more": view.more_messages,
                "all_url": _changelist("messaging_message", customer.pk),
            },
        )


admin.site.unregister(Customer)
admin.site.register(Customer, CustomerAdmin360)
# The GDPR actions were added to the admin registered before this one (consent.admin).
customer_admin_extend()
