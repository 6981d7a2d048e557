"""Logging: plain or JSON lines (``LOG_FORMAT``), each carrying the request and task it
belongs to.

A web request gets an id (the ``X-Request-ID`` header if it sent a safe one, otherwise a new
one), held in a context variable while it is served and returned in the response. A task
gets its id and name from Celery's prerun/postrun signals, and the id of the request (or
task) that enqueued it from a message header added at publish, so a worker's lines name
the request that caused them. ``ContextFilter`` stamps all three on every record, including
Django's and Celery's own, and both formatters print them.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django.http.response import HttpResponseBase

REQUEST_ID_HTTP_HEADER = "X-Request-ID"
# The Celery message header that carries the request id to the task (and on to the tasks
# it enqueues in turn).
REQUEST_ID_TASK_HEADER = "milepost_request_id"
# Where the middleware also leaves the id on the request (a WSGI-style extension key, which
# no client header can produce): Django logs 4xx responses after the middleware has returned.
REQUEST_ID_META = "milepost.request_id"
LOG_FORMATS = ("plain", "json")

request_id_var: ContextVar[str | None] = ContextVar("log_request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("log_task_id", default=None)
task_name_var: ContextVar[str | None] = ContextVar("log_task_name", default=None)

# Letters, digits and ._:- only: an id is printed into log lines and echoed in a header.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_CONTEXT_FIELDS = ("request_id", "task_id", "task_name")
# Attributes every LogRecord has; anything else on a record came from ``extra={...}``.
_BLANK_RECORD = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
_RECORD_FIELDS = frozenset({*vars(_BLANK_RECORD), "message", "asctime", *_CONTEXT_FIELDS})
# The JSON formatter's own fields: an extra of one of these names is renamed extra_<name>.
_DOCUMENT_FIELDS = frozenset(
    {"time", "level", "logger", "message", "exception", "stack", *_CONTEXT_FIELDS}
)
_TaskTokens = tuple[Token[str | None], Token[str | None], Token[str | None]]
_task_tokens: dict[str | None, _TaskTokens] = {}


def logging_config(*, level: str, log_format: str) -> dict[str, Any]:
    """``LOGGING`` for ``LOG_LEVEL`` and ``LOG_FORMAT``; fails loudly on an unknown format."""
    if log_format not in LOG_FORMATS:
        raise ImproperlyConfigured("LOG_FORMAT must be plain or json")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "config.logs.ContextFilter"}},
        "formatters": {
            "plain": {
                "class": "config.logs.PlainFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            },
            "json": {"class": "config.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "INFO"}},
    }


def request_id_is_safe(value: object) -> bool:
    return isinstance(value, str) and _SAFE_ID.fullmatch(value) is not None


def request_id_choose(incoming: str | None) -> str:
    """The caller's id if it is a safe token (1-200 of ``[A-Za-z0-9._:-]``), else a new one."""
    if incoming is not None and request_id_is_safe(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Holds the request's id in ``request_id_var`` while it is served and returns it in the
    ``X-Request-ID`` response header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_choose(request.headers.get(REQUEST_ID_HTTP_HEADER))
        request.META[REQUEST_ID_META] = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HTTP_HEADER] = request_id
        return response


def request_id_publish(*, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish``: carry the current request id in the task's message headers."""
    request_id = request_id_var.get()
    if request_id is not None and headers is not None:
        headers.setdefault(REQUEST_ID_TASK_HEADER, request_id)


def task_context_enter(*, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """``task_prerun``: the task's id and name, and the request id its message carried. A
    task run eagerly has no message and keeps the request id of whoever called it."""
    carried = getattr(getattr(task, "request", None), REQUEST_ID_TASK_HEADER, None)
    request_id = carried if request_id_is_safe(carried) else request_id_var.get()
    _task_tokens[task_id] = (
        request_id_var.set(request_id),
        task_id_var.set(task_id),
        task_name_var.set(getattr(task, "name", None)),
    )


def task_context_exit(*, task_id: str | None = None, **_: Any) -> None:
    """``task_postrun`` (sent however the task ended): back to the context before it."""
    tokens = _task_tokens.pop(task_id, None)
    if tokens is not None:
        request_token, task_id_token, task_name_token = tokens
        task_name_var.reset(task_name_token)
        task_id_var.reset(task_id_token)
        request_id_var.reset(request_token)


def _request_id_of(record: logging.LogRecord) -> str | None:
    # Django logs a 4xx/5xx response with the request in ``extra`` once the middleware has
    # returned (and reset the context variable).
    meta = getattr(getattr(record, "request", None), "META", None)
    found = meta.get(REQUEST_ID_META) if isinstance(meta, dict) else None
    return found if isinstance(found, str) else None


class ContextFilter(logging.Filter):
    """Stamps ``request_id``, ``task_id`` and ``task_name`` on every record (None when not
    known); a value the caller passed in ``extra`` is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get() or _request_id_of(record)
        if getattr(record, "task_id", None) is None:
            record.task_id = task_id_var.get()
        if getattr(record, "task_name", None) is None:
            record.task_name = task_name_var.get()
        return True


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    return {field: getattr(record, field, None) for field in _CONTEXT_FIELDS}


class PlainFormatter(logging.Formatter):
    """The given format, then ``[request_id=… task_name=… task_id=…]`` for what is known."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        known = " ".join(f"{k}={v}" for k, v in _context_of(record).items() if v is not None)
        return f"{line} [{known}]" if known else line


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the line
        return f"<unprintable {type(value).__qualname__}>"


def _as_utf8_text(value: object) -> str | None:
    # Lone surrogates (undecodable bytes read with surrogateescape) are not valid UTF-8.
    return None if value is None else _as_text(value).encode("utf-8", "backslashreplace").decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ms), ``level``, ``logger``, ``message``,
    ``request_id``, ``task_id``, ``task_name`` (when known), ``exception`` and ``stack``
    (when there is one), then the caller's ``extra`` fields. A value JSON cannot hold is
    written as its ``str``; an extra named like a field above is written as ``extra_<name>``.
    """

    def format(self, record: logging.LogRecord) -> str:
        document = self._document(record)
        try:
            return orjson.dumps(document, default=_as_text, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # an int past 64 bits, a cycle, a lone surrogate: all as plain text
            return orjson.dumps(
                {_as_text(k): _as_utf8_text(v) for k, v in document.items()}
            ).decode()

    def _document(self, record: logging.LogRecord) -> dict[str, Any]:
        context = _context_of(record)
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .removesuffix("+00:00")
            + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": self._message(record),
            "request_id": context["request_id"],
            "task_id": context["task_id"],
        }
        if context["task_name"] is not None:
            document["task_name"] = context["task_name"]
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS:
                document[f"extra_{key}" if key in _DOCUMENT_FIELDS else key] = value
        return document

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        try:
            return record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, raw
            return f"{_as_text(record.msg)} % {_as_text(record.args)}"
