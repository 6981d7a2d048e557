"""Log lines name the request and the task they belong to, as plain text or one JSON object
per line (LOG_FORMAT); a request's id follows the tasks it enqueues into the worker."""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from celery import signals
from celery.app.task import Context
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import path

from config.celery import app
from config.logs import (
    REQUEST_ID_TASK_HEADER,
    ContextFilter,
    JsonFormatter,
    PlainFormatter,
    RequestIdMiddleware,
    logging_config,
    request_id_publish,
    request_id_var,
    task_id_var,
    task_name_var,
)

logger = logging.getLogger("tests.config.logs")
NEW_ID = re.compile(r"[0-9a-f]{32}")
# 2025-03-04T05:06:07.891Z
CREATED = datetime(2025, 3, 4, 5, 6, 7, 891_000, tzinfo=UTC).timestamp()


# --- a tiny site to serve through the middleware ---------------------------------------------
def probe_view(request: HttpRequest) -> HttpResponse:
    logger.info("inside the view")
    return HttpResponse(request_id_var.get() or "")


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view broke")


def missing_view(request: HttpRequest) -> HttpResponse:
    raise Http404("nothing here")


urlpatterns = [
    path("probe", probe_view),
    path("boom", failing_view),
    path("missing", missing_view),
]


# --- a task to run eagerly and on a real worker ----------------------------------------------
seen_by_task: dict[str, tuple[str | None, str | None, str | None]] = {}
task_done: dict[str, threading.Event] = {}
task_logger = logging.getLogger("tests.config.logs.task")


@app.task(name="maintenance.test_log_probe", ignore_result=True)
def log_probe(token: str) -> None:
    seen_by_task[token] = (request_id_var.get(), task_id_var.get(), task_name_var.get())
    task_logger.info("task ran %s", token)
    if token in task_done:
        task_done[token].set()


# --- helpers ---------------------------------------------------------------------------------
@contextmanager
def in_context(
    *, request_id: str | None = None, task_id: str | None = None, task_name: str | None = None
) -> Iterator[None]:
    tokens = (
        request_id_var.set(request_id),
        task_id_var.set(task_id),
        task_name_var.set(task_name),
    )
    try:
        yield
    finally:
        request_id_var.reset(tokens[0])
        task_id_var.reset(tokens[1])
        task_name_var.reset(tokens[2])


def make_record(
    msg: str = "sent %d of %s",
    args: tuple[Any, ...] = (3, "five"),
    *,
    level: int = logging.WARNING,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
) -> logging.LogRecord:
    record = logger.makeRecord(logger.name, level, "probe.py", 12, msg, args, exc_info, extra=extra)
    record.created, record.msecs = CREATED, 891.0
    return record


def stamped(record: logging.LogRecord) -> logging.LogRecord:
    assert ContextFilter().filter(record) is True
    return record


def as_json(record: logging.LogRecord) -> Any:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return orjson.loads(line)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Records as the console handler sees them: stamped by the context filter."""
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)
    return caplog


def record_of(caplog: pytest.LogCaptureFixture, message: str) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.getMessage() == message]
    return record


# --- the JSON formatter ----------------------------------------------------------------------
def test_a_json_line_has_time_level_logger_message_context_and_extras() -> None:
    record = make_record(extra={"batch": 7, "channel": "sms", "ids": [1, 2]})
    with in_context(request_id="req-1", task_id="task-1", task_name="journeys.advance"):
        stamped(record)

    assert as_json(record) == {
        "time": "2025-03-04T05:06:07.891Z",
        "level": "WARNING",
        "logger": "tests.config.logs",
        "message": "sent 3 of five",
        "request_id": "req-1",
        "task_id": "task-1",
        "task_name": "journeys.advance",
        "batch": 7,
        "channel": "sms",
        "ids": [1, 2],
    }


def test_outside_a_request_or_task_the_ids_are_null_and_there_is_no_task_name() -> None:
    record = stamped(make_record(level=logging.INFO))

    assert as_json(record) == {
        "time": "2025-03-04T05:06:07.891Z",
        "level": "INFO",
        "logger": "tests.config.logs",
        "message": "sent 3 of five",
        "request_id": None,
        "task_id": None,
    }


def test_an_exception_is_written_as_its_formatted_traceback() -> None:
    try:
        raise ValueError("bad batch")
    except ValueError:
        exc_info = sys.exc_info()
    record = stamped(make_record("batch failed", (), level=logging.ERROR, exc_info=exc_info))

    document = as_json(record)

    assert document == {
        "time": "2025-03-04T05:06:07.891Z",
        "level": "ERROR",
        "logger": "tests.config.logs",
        "message": "batch failed",
        "request_id": None,
        "task_id": None,
        "exception": logging.Formatter().formatException(exc_info),
    }
    assert document["exception"].startswith("Traceback (most recent call last):\n")
    assert document["exception"].endswith("\nValueError: bad batch")


class Opaque:
    def __str__(self) -> str:
        return "opaque thing"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_an_extra_json_cannot_hold_is_written_as_its_text() -> None:
    record = stamped(
        make_record(
            extra={
                "thing": Opaque(),
                "broken": Unprintable(),
                "nested": {"at": Opaque(), 5: "five"},
                "when": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            }
        )
    )

    assert as_json(record) == {
        "time": "2025-03-04T05:06:07.891Z",
        "level": "WARNING",
        "logger": "tests.config.logs",
        "message": "sent 3 of five",
        "request_id": None,
        "task_id": None,
        "thing": "opaque thing",
        "broken": "<unprintable Unprintable>",
        "nested": {"at": "opaque thing", "5": "five"},
        "when": "2025-01-02T03:04:05+00:00",
    }


def test_a_value_orjson_refuses_outright_turns_the_whole_line_into_text() -> None:
    # an int past 64 bits and a lone surrogate are errors, not calls to ``default``
    record = stamped(make_record("path %s", ("data/\udcff",), extra={"big": 2**70, "n": 1}))

    assert as_json(record) == {
        "time": "2025-03-04T05:06:07.891Z",
        "level": "WARNING",
        "logger": "tests.config.logs",
        "message": "path data/\\udcff",
        "request_id": None,
        "task_id": None,
        "big": "1180591620717411303424",
        "n": "1",
    }


def test_arguments_that_do_not_fit_the_message_do_not_lose_the_line() -> None:
    record = stamped(make_record("%d items", ("many",)))

    assert as_json(record)["message"] == "%d items % ('many',)"


def test_an_extra_named_like_a_field_is_renamed_not_lost() -> None:
    record = stamped(make_record(extra={"level": "gold", "time": 3, "logger": "mine"}))

    document = as_json(record)

    assert (document["level"], document["time"], document["logger"]) == (
        "WARNING",
        "2025-03-04T05:06:07.891Z",
        "tests.config.logs",
    )
    assert (document["extra_level"], document["extra_time"], document["extra_logger"]) == (
        "gold",
        3,
        "mine",
    )


def test_an_id_the_caller_passed_in_extra_is_kept() -> None:
    record = make_record(extra={"request_id": "from-caller"})
    with in_context(request_id="from-context", task_id="t-9"):
        stamped(record)

    assert (record.request_id, record.task_id, record.task_name) == ("from-caller", "t-9", None)


# --- the plain formatter ---------------------------------------------------------------------
def test_a_plain_line_ends_with_the_ids_that_are_known() -> None:
    formatter = PlainFormatter("%(levelname)s %(name)s %(message)s")
    record = make_record()
    with in_context(request_id="req-1", task_id="task-1", task_name="journeys.advance"):
        stamped(record)

    assert formatter.format(record) == (
        "WARNING tests.config.logs sent 3 of five "
        "[request_id=req-1 task_id=task-1 task_name=journeys.advance]"
    )


def test_a_plain_line_without_context_is_unchanged() -> None:
    formatter = PlainFormatter("%(levelname)s %(name)s %(message)s")

    assert formatter.format(stamped(make_record())) == "WARNING tests.config.logs sent 3 of five"


# --- LOG_FORMAT ------------------------------------------------------------------------------
def test_log_format_json_gives_the_console_handler_the_json_formatter_and_the_filter() -> None:
    assert logging_config(level="WARNING", log_format="json") == {
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
                "formatter": "json",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {"django.db.backends": {"level": "INFO"}},
    }


@pytest.mark.parametrize(
    ("log_format", "line"),
    [
        (
            "plain",
            "2025-03-04 05:06:07,891 WARNING tests.config.logs sent 3 of five [request_id=r-1]",
        ),
        (
            "json",
            '{"time":"2025-03-04T05:06:07.891Z","level":"WARNING","logger":"tests.config.logs",'
            '"message":"sent 3 of five","request_id":"r-1","task_id":null}',
        ),
    ],
)
def test_log_format_picks_the_line_the_console_writes(log_format: str, line: str) -> None:
    # given: the console handler's formatter and filter, built as dictConfig builds them
    config = logging_config(level="INFO", log_format=log_format)
    configurator = logging.config.DictConfigurator(config)
    handler = config["handlers"]["console"]
    formatter = configurator.configure_formatter(config["formatters"][handler["formatter"]])
    (filter_name,) = handler["filters"]
    context_filter = configurator.configure_filter(config["filters"][filter_name])
    record = make_record()

    # when
    with in_context(request_id="r-1"):
        context_filter.filter(record)

    # then (Django runs the process in TIME_ZONE, UTC, so asctime is UTC)
    assert formatter.format(record) == line


def test_an_unknown_log_format_fails_loudly() -> None:
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT must be plain or json"):
        logging_config(level="INFO", log_format="xml")


def test_the_settings_build_logging_from_log_level_and_log_format() -> None:
    configured = settings.LOGGING

    assert configured == logging_config(level=settings.LOG_LEVEL, log_format=settings.LOG_FORMAT)
    assert settings.MIDDLEWARE[0] == "config.logs.RequestIdMiddleware"


# --- request ids -----------------------------------------------------------------------------
pytest_urls = pytest.mark.urls("tests.config.test_logs")


@pytest_urls
@pytest.mark.parametrize("incoming", ["edge-7f3a:01.b_c", "A" * 200, "1"])
def test_a_safe_incoming_request_id_is_kept_seen_by_the_view_and_returned(
    client: Client, records: pytest.LogCaptureFixture, incoming: str
) -> None:
    response = client.get("/probe", HTTP_X_REQUEST_ID=incoming)

    assert (response.status_code, response["X-Request-ID"]) == (200, incoming)
    assert response.content.decode() == incoming
    assert record_of(records, "inside the view").request_id == incoming
    assert request_id_var.get() is None


@pytest_urls
@pytest.mark.parametrize(
    "incoming", ["has spaces", "a" * 201, "a" * 500, "", 'quote"s', "new\nline", "ünï"]
)
def test_an_unsafe_incoming_request_id_is_replaced_with_a_new_one(
    client: Client, records: pytest.LogCaptureFixture, incoming: str
) -> None:
    response = client.get("/probe", HTTP_X_REQUEST_ID=incoming)

    request_id = response["X-Request-ID"]
    assert NEW_ID.fullmatch(request_id)
    assert response.content.decode() == request_id
    assert record_of(records, "inside the view").request_id == request_id
    assert request_id_var.get() is None


@pytest_urls
def test_a_request_without_an_id_gets_a_new_one_each_time(client: Client) -> None:
    first = client.get("/probe")["X-Request-ID"]
    second = client.get("/probe")["X-Request-ID"]

    assert NEW_ID.fullmatch(first)
    assert NEW_ID.fullmatch(second)
    assert first != second


@pytest_urls
def test_a_failing_view_s_error_line_and_response_carry_the_request_id(
    records: pytest.LogCaptureFixture,
) -> None:
    client = Client(raise_request_exception=False)

    response = client.get("/boom", HTTP_X_REQUEST_ID="req-boom")

    assert (response.status_code, response["X-Request-ID"]) == (500, "req-boom")
    error = record_of(records, "Internal Server Error: /boom")
    assert (error.name, error.request_id) == ("django.request", "req-boom")
    assert request_id_var.get() is None


@pytest_urls
def test_a_4xx_line_django_writes_after_the_middleware_returned_carries_the_request_id(
    client: Client, records: pytest.LogCaptureFixture
) -> None:
    response = client.get("/missing", HTTP_X_REQUEST_ID="req-404")

    assert (response.status_code, response["X-Request-ID"]) == (404, "req-404")
    assert request_id_var.get() is None
    not_found = record_of(records, "Not Found: /missing")
    assert (not_found.name, not_found.request_id) == ("django.request", "req-404")


def test_the_request_id_is_reset_when_the_view_raises_through_the_middleware() -> None:
    seen: list[str | None] = []

    def raising(request: HttpRequest) -> HttpResponse:
        seen.append(request_id_var.get())
        raise RuntimeError("escaped")

    with pytest.raises(RuntimeError, match="escaped"):
        RequestIdMiddleware(raising)(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-raise"))

    assert seen == ["req-raise"]
    assert request_id_var.get() is None


def test_an_outer_request_id_is_restored_after_a_nested_request() -> None:
    with in_context(request_id="outer"):
        response = RequestIdMiddleware(lambda request: HttpResponse())(RequestFactory().get("/"))

        assert request_id_var.get() == "outer"
    assert NEW_ID.fullmatch(response["X-Request-ID"])


# --- task ids --------------------------------------------------------------------------------
def test_an_eager_task_s_lines_carry_its_id_and_name_and_the_callers_request_id(
    records: pytest.LogCaptureFixture,
) -> None:
    with in_context(request_id="req-eager"):
        result = log_probe.apply(args=("eager",))

        assert (request_id_var.get(), task_id_var.get(), task_name_var.get()) == (
            "req-eager",
            None,
            None,
        )

    assert seen_by_task["eager"] == ("req-eager", result.id, "maintenance.test_log_probe")
    line = record_of(records, "task ran eager")
    assert (line.request_id, line.task_id, line.task_name) == (
        "req-eager",
        result.id,
        "maintenance.test_log_probe",
    )


def test_publishing_a_task_during_a_request_adds_the_request_id_to_its_headers() -> None:
    headers: dict[str, Any] = {"id": "t-1", "task": "journeys.advance"}

    with in_context(request_id="req-publish"):
        request_id_publish(sender="journeys.advance", body=(), headers=headers)

    assert headers == {
        "id": "t-1",
        "task": "journeys.advance",
        REQUEST_ID_TASK_HEADER: "req-publish",
    }


def test_publishing_outside_a_request_adds_nothing_and_keeps_a_header_already_set() -> None:
    empty: dict[str, Any] = {"id": "t-1"}
    already: dict[str, Any] = {"id": "t-2", REQUEST_ID_TASK_HEADER: "req-first"}

    request_id_publish(sender="journeys.advance", headers=empty)
    with in_context(request_id="req-second"):
        request_id_publish(sender="journeys.advance", headers=already)

    assert empty == {"id": "t-1"}
    assert already == {"id": "t-2", REQUEST_ID_TASK_HEADER: "req-first"}


class FakeTask:
    def __init__(self, name: str, message_headers: dict[str, Any]) -> None:
        self.name = name
        # task.request as the worker builds it from the message's headers
        self.request = Context(message_headers)


def fake_task(name: str, message_headers: dict[str, Any]) -> FakeTask:
    return FakeTask(name, message_headers)


def test_the_worker_side_puts_the_carried_request_id_in_context_while_the_task_runs() -> None:
    # given: the headers a web request's publish left on the message
    headers: dict[str, Any] = {"id": "t-7", "task": "journeys.advance"}
    with in_context(request_id="req-origin"):
        request_id_publish(sender="journeys.advance", headers=headers)
    task = fake_task("journeys.advance", headers)

    # when: the worker runs it
    signals.task_prerun.send(sender=task, task_id="t-7", task=task, args=(), kwargs={})
    during = (request_id_var.get(), task_id_var.get(), task_name_var.get())
    record = stamped(make_record("advanced", ()))
    signals.task_postrun.send(
        sender=task, task_id="t-7", task=task, args=(), kwargs={}, retval=None, state="SUCCESS"
    )

    # then
    assert during == ("req-origin", "t-7", "journeys.advance")
    assert (record.request_id, record.task_id, record.task_name) == during
    assert (request_id_var.get(), task_id_var.get(), task_name_var.get()) == (None, None, None)


def test_a_task_published_outside_a_request_or_with_an_unsafe_id_runs_without_one() -> None:
    for index, headers in enumerate([{}, {REQUEST_ID_TASK_HEADER: "bad id\n"}]):
        task = fake_task("milestones.sweep", {"id": f"t-{index}", **headers})

        signals.task_prerun.send(sender=task, task_id=f"t-{index}", task=task)
        during = (request_id_var.get(), task_id_var.get())
        signals.task_postrun.send(sender=task, task_id=f"t-{index}", task=task)

        assert during == (None, f"t-{index}")


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def task_lines() -> Iterator[ListHandler]:
    # Its own handler, kept when the worker applies LOGGING to the root logger.
    handler = ListHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    task_logger.addHandler(handler)
    yield handler
    task_logger.removeHandler(handler)


def test_a_worker_s_lines_carry_the_request_id_of_the_request_that_enqueued_the_task(
    task_lines: ListHandler,
) -> None:
    task_done["worker"] = threading.Event()
    with start_worker(
        app, queues=["maintenance"], pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        # when: a request enqueues the task
        with in_context(request_id="req-worker"):
            result = log_probe.delay("worker")

        # then: the worker ran it with the request's id (its thread has a context of its own)
        assert task_done["worker"].wait(timeout=10)

    assert seen_by_task["worker"] == ("req-worker", result.id, "maintenance.test_log_probe")
    (line,) = [orjson.loads(line) for line in task_lines.lines if "task ran worker" in line]
    assert (line["message"], line["request_id"], line["task_id"], line["task_name"]) == (
        "task ran worker",
        "req-worker",
        result.id,
        "maintenance.test_log_probe",
    )


def test_workers_and_beat_log_through_logging_instead_of_celerys_own_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    applied: list[dict[str, Any]] = []
    monkeypatch.setattr(logging.config, "dictConfig", applied.append)

    receivers = signals.setup_logging.send(
        sender=None, loglevel=logging.DEBUG, logfile=None, format="%(message)s", colorize=False
    )

    # a receiver that answers tells Celery to leave the root logger's handlers alone
    assert [response for _, response in receivers] == [None]
    assert applied == [settings.LOGGING]
