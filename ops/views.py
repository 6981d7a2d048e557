"""Liveness, readiness and metrics: plain Django views, no session or DRF machinery, so a
load balancer's or Prometheus's request costs only the checks themselves."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ops.health import readiness
from ops.metrics import metrics_render

METRICS_DISABLED = (
    "Metrics are disabled. Set METRICS_TOKEN in the environment and scrape with the header "
    "'Authorization: Bearer <METRICS_TOKEN>'.\n"
)
METRICS_FORBIDDEN = "Send the header 'Authorization: Bearer <METRICS_TOKEN>'.\n"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. It checks nothing else, so a database or
    broker outage never gets every web process restarted."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, the broker and the beat heartbeat are all well,
    else 503; the body names each check with its detail and duration."""
    report = readiness()
    return JsonResponse(report.as_json(), status=200 if report.is_ready else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, for a bearer of METRICS_TOKEN (403 while it is unset)."""
    token: str = settings.METRICS_TOKEN
    if not token:
        return _plain(METRICS_DISABLED, status=403)
    if not bearer_matches(request.headers.get("Authorization", ""), token):
        return _plain(METRICS_FORBIDDEN, status=403)
    body, content_type = metrics_render(accept=request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


def bearer_matches(header: str, token: str) -> bool:
    """Whether ``header`` is ``Bearer <token>``, compared in constant time."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _plain(text: str, *, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
