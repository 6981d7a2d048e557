"""Tuning of Python's cyclic garbage collector for the long-running processes.

A runner batch or an evaluation loads hundreds of model instances, and at CPython's default
thresholds (700, 10, 10) every few hundred of them start a collection that walks the
young objects, and every ten of those the older ones: ~10% of a runner's CPU, spent
finding almost nothing (Django's objects die by reference counting). ``collector_tune``
raises the thresholds (``GC_THRESHOLDS``) and, in a process whose code is loaded, freezes
what is there (modules, settings, the app registry) so a full collection never walks it
again. Cycles are still collected, just in larger, rarer sweeps; memory rises by at most
one generation's worth of objects awaiting a sweep.

Called in each Celery pool process as it starts and in each web worker once the WSGI app
is loaded. Tests and management commands keep the defaults.
"""

from __future__ import annotations

import gc

from django.conf import settings


def collector_tune(*, freeze: bool = True) -> tuple[int, int, int]:
    """Apply ``GC_THRESHOLDS`` (empty: leave CPython's) and freeze what is loaded; return
    the thresholds in force."""
    thresholds = tuple(settings.GC_THRESHOLDS)
    if thresholds:
        gc.set_threshold(*thresholds)
    if freeze:
        gc.freeze()
    first, second, third = gc.get_threshold()
    return first, second, third
