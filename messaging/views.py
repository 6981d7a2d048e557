"""HTTP shells: tracking links, and provider webhooks (signed) that report on sends.

Each view checks what it is sent (signature, token), turns it into ``Observation``s or an
SMS keyword, and calls one service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from consent.services import sms_keyword_apply
from messaging import feedback, selectors
from messaging.channels.webhook import signature_verify
from messaging.tracking import BadTrackingToken, click_read, open_read

# A transparent 1x1 GIF.
_PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@require_GET
@never_cache
def click(request: HttpRequest, token: str) -> HttpResponse:
    """Redirect to a URL the message contains, and record the click. Anything else is a 404:
    a signed token cannot be turned into a redirect to a URL of the sender's choosing."""
    try:
        message_id, index = click_read(token)
    except BadTrackingToken:
        return HttpResponse("Unknown link.", status=404, content_type="text/plain")
    url = selectors.message_link(message_id=message_id, index=index)
    if url is None:
        return HttpResponse("Unknown link.", status=404, content_type="text/plain")
    feedback.observations_apply(
        [
            feedback.Observation(
                message_id, feedback.CLICKED, timezone.now(), url=url, link_index=index
            )
        ]
    )
    response = HttpResponseRedirect(url)
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
@never_cache
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    try:
        message_id = open_read(token)
    except BadTrackingToken:
        message_id = None
    if message_id is not None:
        feedback.observations_apply(
            [feedback.Observation(message_id, feedback.OPENED, timezone.now())]
        )
    return HttpResponse(_PIXEL, content_type="image/gif")


@csrf_exempt  # a provider's server calls this; the signature is the authentication
@require_POST
def email_webhook(request: HttpRequest) -> HttpResponse:
    """Delivery reports from an ESP, normalised: ``{"events": [{"provider_id" | "message_id",
    "event": "delivered" | "bounced" | "soft_bounced" | "complained" | "opened" | "clicked",
    "detail", "url"}]}``, signed with ``MESSAGING_INBOUND_WEBHOOK_SECRET`` (header
    ``Milepost-Signature: t=<unix>,v1=<hex hmac-sha256 of "t.body">``)."""
    secret = settings.MESSAGING_INBOUND_WEBHOOK_SECRET
    header = request.headers.get("Milepost-Signature", "")
    if not secret or not signature_verify(secret, header, request.body, tolerance_seconds=300):
        return JsonResponse({"error": "invalid or missing signature"}, status=401)
    try:
        payload = orjson.loads(request.body)
        items = payload["events"]
        if not isinstance(items, list):
            raise TypeError
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return JsonResponse({"error": 'the body must be JSON: {"events": [...]}'}, status=400)
    observations, errors = _email_observations(items)
    applied = feedback.observations_apply(observations) if observations else 0
    return JsonResponse(
        {"accepted": len(observations), "applied": applied, "errors": errors},
        status=200,
    )


def _email_observations(
    items: list[Any],
) -> tuple[list[feedback.Observation], list[dict[str, object]]]:
    observations, errors = [], []
    now = timezone.now()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"index": index, "error": "must be an object"})
            continue
        kind = item.get("event")
        if kind not in feedback.KINDS:
            errors.append({"index": index, "error": f"unknown event {kind!r}"})
            continue
        message_id = selectors.message_for_report(
            provider_id=str(item.get("provider_id") or ""),
            message_id=item.get("message_id") if isinstance(item.get("message_id"), int) else None,
        )
        if message_id is None:
            errors.append({"index": index, "error": "no such message"})
            continue
        observations.append(
            feedback.Observation(
                message_id,
                str(kind),
                now,
                detail=str(item.get("detail") or "")[:500],
                url=str(item.get("url") or "")[:2000],
            )
        )
    return observations, errors


def twilio_signature_valid(request: HttpRequest, token: str) -> bool:
    """Twilio's scheme: base64 HMAC-SHA1 of the full URL it called followed by every POST
    parameter, sorted by name, as name + value."""
    if not token:
        return False
    url = f"{settings.PUBLIC_BASE_URL}{request.get_full_path()}"
    signed = url + "".join(f"{key}{request.POST[key]}" for key in sorted(request.POST))
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    expected = base64.b64encode(digest).decode()
    return hmac.compare_digest(expected, request.headers.get("X-Twilio-Signature", ""))


# Twilio error codes that mean the number cannot receive messages.
_BAD_NUMBER_CODES = frozenset({"21211", "21612", "21614", "30003", "30005", "30006"})


@csrf_exempt
@require_POST
def sms_status_webhook(request: HttpRequest) -> HttpResponse:
    if not twilio_signature_valid(request, settings.MESSAGING_SMS_TOKEN):
        return HttpResponse("invalid signature", status=401, content_type="text/plain")
    sid, status = request.POST.get("MessageSid", ""), request.POST.get("MessageStatus", "")
    message_id = selectors.message_for_report(provider_id=sid, message_id=None)
    kind = {"delivered": feedback.DELIVERED, "undelivered": feedback.FAILED}.get(status)
    if status == "failed":
        kind = feedback.FAILED
    code = request.POST.get("ErrorCode", "")
    if kind == feedback.FAILED and code in _BAD_NUMBER_CODES:
        kind = feedback.BOUNCED
    if message_id is not None and kind is not None:
        detail = f"{status} {code}".strip()
        feedback.observations_apply(
            [feedback.Observation(message_id, kind, timezone.now(), detail=detail)]
        )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def sms_inbound_webhook(request: HttpRequest) -> HttpResponse:
    """Inbound SMS: STOP/START/HELP keywords, answered with TwiML."""
    if not twilio_signature_valid(request, settings.MESSAGING_SMS_TOKEN):
        return HttpResponse("invalid signature", status=401, content_type="text/plain")
    result = sms_keyword_apply(
        phone=request.POST.get("From", ""), body=request.POST.get("Body", "")
    )
    reply = f"<Message>{escape(result.reply)}</Message>" if result.reply else ""
    return HttpResponse(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{reply}</Response>',
        content_type="application/xml",
    )
