"""Who is acting: the signed-in user (or API token user) of the request being served, else
what ``acting_as`` names, else the Celery task running (``task:<name>``), else "system"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

from config.logs import task_name_var

_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)
_label: ContextVar[str | None] = ContextVar("audit_label", default=None)

SYSTEM = "system"


class AuditActorMiddleware:
    """Remembers the request so a change made while serving it names its user. The user is
    read when a change is recorded, not here: DRF authenticates API tokens in the view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


@contextmanager
def acting_as(label: str) -> Iterator[None]:
    """Name the actor of changes made outside a request (a command, a task)."""
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


def actor() -> tuple[Any, str]:
    """(user or None, label) of whoever is making the current change."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    if user is not None and user.is_authenticated:
        return user, user.get_username()
    task = task_name_var.get()
    return None, _label.get() or (f"task:{task}" if task else SYSTEM)
