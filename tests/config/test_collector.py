"""Workers and web processes run the garbage collector at GC_THRESHOLDS, with their loaded
code frozen out of full collections."""

from __future__ import annotations

import gc
import importlib

from celery import signals
from django.test import override_settings

from config.collector import collector_tune


@override_settings(GC_THRESHOLDS=[12_345, 7, 3])
def test_the_thresholds_come_from_the_setting() -> None:
    assert collector_tune(freeze=False) == (12_345, 7, 3)
    assert gc.get_threshold() == (12_345, 7, 3)
    assert gc.get_freeze_count() == 0


@override_settings(GC_THRESHOLDS=[])
def test_no_thresholds_leave_the_interpreter_s_own() -> None:
    gc.set_threshold(700, 10, 10)
    assert collector_tune(freeze=False) == (700, 10, 10)


@override_settings(GC_THRESHOLDS=[50_000, 20, 20])
def test_freezing_moves_what_is_loaded_out_of_collections() -> None:
    collector_tune()
    assert gc.get_freeze_count() > 10_000


@override_settings(GC_THRESHOLDS=[40_000, 15, 15])
def test_each_celery_pool_process_tunes_its_collector_as_it_starts() -> None:
    signals.worker_process_init.send(sender=None)
    assert gc.get_threshold() == (40_000, 15, 15)
    assert gc.get_freeze_count() > 10_000


@override_settings(GC_THRESHOLDS=[30_000, 9, 9])
def test_each_web_worker_tunes_its_collector_once_the_app_is_loaded() -> None:
    import config.wsgi

    importlib.reload(config.wsgi)
    assert gc.get_threshold() == (30_000, 9, 9)
