"""Per-process caches of configuration rows read on the hot path.

Every evaluation, enrollment and decision batch needs the same few configuration rows: live
journeys, webhook endpoints, topics, caps, region policies, quiet hours, templates, lifecycle
stages. Read from the database each time they cost a dozen statements per batch — more than
the batch's own work when it holds one event. So each is loaded once and kept for
``CONFIG_CACHE_SECONDS``. A save or delete of one of the cache's models in this process
forgets it at once (the admin and tests see their change immediately); other processes see
it within the TTL, and the sweeps hand on whatever a stale process passed over (DESIGN.md
§2.1). Code that changes these rows with ``QuerySet.update`` calls ``forget`` itself.

Cached values are shared: callers must not mutate them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

T = TypeVar("T")

_ALL: list[Cached[Any]] = []


class Cached(Generic[T]):
    """``load()``'s result, kept for ``seconds`` (default ``CONFIG_CACHE_SECONDS``) and
    forgotten when a row of ``models`` is saved or deleted in this process."""

    def __init__(
        self,
        load: Callable[[], T],
        *,
        models: Sequence[type[Model]],
        seconds: Callable[[], float] | None = None,
    ) -> None:
        self._load = load
        self._seconds = seconds or (lambda: float(settings.CONFIG_CACHE_SECONDS))
        self._value: tuple[float, T] | None = None
        self._lock = threading.Lock()
        for model in models:
            uid = f"config.cache:{id(self)}:{model._meta.label}"
            post_save.connect(self._forget, sender=model, weak=False, dispatch_uid=uid)
            post_delete.connect(self._forget, sender=model, weak=False, dispatch_uid=uid)
        _ALL.append(self)

    def get(self) -> T:
        found = self._value
        if found is not None and time.monotonic() < found[0]:
            return found[1]
        with self._lock:
            # Stamp the expiry before loading: a change committed during the load is seen
            # by the next load, never hidden for a whole TTL after it.
            expires = time.monotonic() + self._seconds()
            value = self._load()
            self._value = (expires, value)
        return value

    def forget(self) -> None:
        self._value = None

    def prime(self, value: T, *, seconds: float = math.inf) -> None:
        """Hold ``value`` as if just loaded (tests: a known starting state)."""
        self._value = (time.monotonic() + seconds, value)

    def _forget(self, **kwargs: Any) -> None:
        self.forget()


def cached(
    *models: type[Model], seconds: Callable[[], float] | None = None
) -> Callable[[Callable[[], T]], Cached[T]]:
    """Decorator: ``@cached(Topic, QuietHours)`` over a loader taking no arguments."""

    def wrap(load: Callable[[], T]) -> Cached[T]:
        return Cached(load, models=models, seconds=seconds)

    return wrap


def caches_forget() -> None:
    """Forget every cache (tests: one test's configuration must not leak into the next)."""
    for cache in _ALL:
        cache.forget()
