"""Shared fixtures. Tests run on PostgreSQL (see the Makefile); factories: tests/factories.py."""

from __future__ import annotations

import base64
import gc
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from django.core.cache import cache
from django.test import Client

from config.cache import caches_forget
from config.wake import wakes_forget
from customers.selectors import source_cache_clear
from customers.services import CreatedKey, source_create
from milestones import registry as milestone_registry


@pytest.fixture
def write_key(db: None) -> CreatedKey:
    return source_create(name="web app")


@pytest.fixture
def post(client: Client, write_key: CreatedKey) -> Callable[..., Any]:
    """POST a JSON payload to a /v1/ endpoint with the write key as Basic auth."""

    def _post(path: str, payload: Any, *, key: str | None = None, **extra: Any) -> Any:
        credentials = base64.b64encode(f"{key or write_key.key}:".encode()).decode()
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return client.post(
            path,
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Basic {credentials}",
            **extra,
        )

    return _post


@pytest.fixture(autouse=True)
def _plain_http(settings: Any) -> None:
    # Production settings redirect to HTTPS; the test client speaks plain HTTP.
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    # Write-key hits are cached per process; tests must not see each other's keys.
    source_cache_clear()
    # Configuration caches start empty: one test's configuration must not leak into the next.
    caches_forget()
    # So does Django's cache (the dashboard is kept there for REPORTS_CACHE_SECONDS).
    cache.clear()
    # The milestone index starts known-empty (as a warm web process would have it) so that
    # query counts do not depend on which test loads it first; any definition change clears it.
    milestone_registry._registry.prime(milestone_registry.Registry.build([]))
    yield
    source_cache_clear()
    caches_forget()


@pytest.fixture(autouse=True)
def _interpreter_collector() -> Iterator[None]:
    # An in-process test worker tunes the collector as a pool process does
    # (config/collector.py); the test process keeps CPython's own, and nothing frozen, so a
    # connection a test thread left behind is collected and closed before teardown.
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture(autouse=True)
def _fresh_wake_flags() -> Iterator[None]:
    # A coalesced wake-up flag in Redis must not outlive the test that set it.
    wakes_forget()
    yield
    wakes_forget()


@pytest.fixture(autouse=True)
def _plain_static_files(settings: Any) -> None:
    # Production settings use the manifest storage, which needs a prior collectstatic;
    # the tests only look at static URLs, so the plain storage serves them.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
