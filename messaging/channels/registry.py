"""Which backend sends each channel: ``MESSAGING_BACKENDS`` maps a channel to an import path;
one instance per channel per process, made on first use (after a worker forks, so no HTTP
connection pool is shared across processes)."""

from __future__ import annotations

import threading
from typing import cast

from django.conf import settings
from django.utils.module_loading import import_string

from messaging.channels.base import Backend, PermanentError

_instances: dict[str, Backend] = {}
_lock = threading.Lock()


def backend_for(channel: str) -> Backend:
    """The backend for ``channel``; ``PermanentError("not configured: ...")`` if none is set.
    A wrong import path raises ImportError: a deployment error, not a message's fate."""
    if backend := _instances.get(channel):
        return backend
    with _lock:
        if channel not in _instances:
            _instances[channel] = _backend_make(channel)
        return _instances[channel]


def backends_reset() -> None:
    """Forget every instance, so the next use reads the settings again (tests)."""
    with _lock:
        _instances.clear()


def _backend_make(channel: str) -> Backend:
    path = settings.MESSAGING_BACKENDS.get(channel)
    if not path:
        raise PermanentError(f"not configured: MESSAGING_BACKENDS has no {channel!r} backend")
    return cast(Backend, import_string(path)())
