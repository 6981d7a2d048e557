"""The login-free consent pages: one-click unsubscribe (RFC 8058), the preference centre and
the double opt-in confirmation.

The signed token in the URL is the only authorisation, so every response is kept out of
caches, referrers and search indexes. A GET never changes consent (mail scanners follow
links); only a POST does. A bad, expired or wrong-purpose token gets a 400 page and writes
nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from consent import links
from consent.forms import PreferenceForm
from consent.models import ConsentSource, SubscriptionStatus
from consent.preferences import (
    LinkTargetGone,
    confirmation_pending,
    preference_centre_apply,
    preference_centre_read,
    unsubscribe_scope,
)
from consent.services import Evidence, confirmation_accept, subscription_set

View = Callable[..., HttpResponse]

PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
ONE_CLICK_WORDING = "List-Unsubscribe=One-Click (RFC 8058), sent by the mail client"


def _private(view: View) -> View:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = view(request, *args, **kwargs)
        for header, value in PRIVATE_HEADERS.items():
            response[header] = value
        return response

    return wrapped


def _evidence(request: HttpRequest, source: str, wording: str) -> Evidence:
    address = request.META.get("REMOTE_ADDR", "")
    try:
        ip_address: str | None = str(ipaddress.ip_address(address))
    except ValueError:
        ip_address = None
    return Evidence(
        source=source,
        ip_address=ip_address,
        user_agent=request.headers.get("User-Agent", ""),
        wording=wording,
    )


def _invalid(request: HttpRequest) -> HttpResponse:
    return render(request, "consent/invalid.html", status=400)


def _preferences_url(claim: links.LinkClaim) -> str:
    return reverse("consent:preferences", args=[links.token_make(links.PREFERENCES, claim)])


@csrf_exempt  # RFC 8058: providers POST without cookies or a CSRF token; the token authorises
@_private
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks; a POST with the RFC 8058 body ``List-Unsubscribe=One-Click`` (a mail
    provider) or this page's form (``confirm=yes``) opts out of the link's channel and topic."""
    try:
        claim = links.token_read(links.UNSUBSCRIBE, token)
        scope = unsubscribe_scope(claim)
    except (links.BadToken, LinkTargetGone):
        return _invalid(request)
    question = f"Unsubscribe from {scope.what}?"
    context: dict[str, object] = {"scope": scope, "question": question}
    if request.method != "POST":
        return render(request, "consent/unsubscribe.html", context)
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    if not one_click and request.POST.get("confirm") != "yes":
        return render(request, "consent/unsubscribe.html", context, status=400)
    subscription_set(
        customer_id=scope.customer_id,
        channel=scope.channel,
        topic_keys=scope.topic_keys,
        status=SubscriptionStatus.OPTED_OUT,
        evidence=_evidence(
            request, ConsentSource.UNSUBSCRIBE_LINK, ONE_CLICK_WORDING if one_click else question
        ),
    )
    context |= {"done": True, "preferences_url": _preferences_url(claim)}
    return render(request, "consent/unsubscribe.html", context)


@_private
@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """The preference centre: a box per topic and channel, a frequency choice and a pause.
    A valid POST applies what changed and redirects back with a message."""
    try:
        claim = links.token_read(links.PREFERENCES, token)
        centre = preference_centre_read(claim.customer_id)
    except (links.BadToken, LinkTargetGone):
        return _invalid(request)
    form = PreferenceForm(centre, data=request.POST if request.method == "POST" else None)
    if not form.is_bound or not form.is_valid():
        status = 400 if form.is_bound else 200
        return render(request, "consent/preferences.html", {"form": form}, status=status)
    applied = preference_centre_apply(
        customer_id=centre.customer_id,
        chosen=form.chosen(),
        evidence=_evidence(request, ConsentSource.PREFERENCE_CENTRE, ""),
    )
    messages.success(request, "Your choices are saved.")
    if applied.pending:
        names = ", ".join(f"\u201c{choice.name}\u201d" for choice in applied.pending)
        messages.info(
            request, f"Check your inbox to confirm: we have emailed you a link to confirm {names}."
        )
    return redirect(request.path)


@_private
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Double opt-in: GET asks, POST confirms every email topic awaiting confirmation."""
    try:
        claim = links.token_read(links.CONFIRM, token)
        pending = confirmation_pending(claim.customer_id)
    except (links.BadToken, LinkTargetGone):
        return _invalid(request)
    question = "Confirm that you want to receive these emails: " + ", ".join(pending)
    context: dict[str, object] = {"pending": pending, "preferences_url": _preferences_url(claim)}
    if request.method != "POST":
        return render(request, "consent/confirm.html", context)
    confirmed = confirmation_accept(
        customer_id=claim.customer_id,
        evidence=_evidence(request, ConsentSource.DOUBLE_OPT_IN, question),
    )
    context |= {"done": True, "confirmed": [s.topic.name for s in confirmed]}
    return render(request, "consent/confirm.html", context)
