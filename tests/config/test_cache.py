"""Per-process configuration caches: loaded once per TTL, forgotten on a save or delete of
their models in this process."""

from __future__ import annotations

import pytest

from config.cache import Cached, caches_forget
from consent.models import Topic


class Loads:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        self.count += 1
        return self.count


def test_a_value_is_loaded_once_while_fresh() -> None:
    load = Loads()
    cache = Cached(load, models=(), seconds=lambda: 60.0)

    assert [cache.get(), cache.get(), cache.get()] == [1, 1, 1]
    assert load.count == 1


def test_an_expired_value_is_loaded_again() -> None:
    load = Loads()
    cache = Cached(load, models=(), seconds=lambda: 0.0)

    assert [cache.get(), cache.get()] == [1, 2]


def test_forget_and_prime() -> None:
    load = Loads()
    cache = Cached(load, models=(), seconds=lambda: 60.0)
    cache.prime(42)
    assert cache.get() == 42
    caches_forget()
    assert (cache.get(), load.count) == (1, 1)


@pytest.mark.django_db
def test_a_save_or_delete_of_a_model_forgets_its_caches() -> None:
    cache = Cached(
        lambda: sorted(Topic.objects.values_list("key", flat=True)),
        models=(Topic,),
        seconds=lambda: 60.0,
    )
    before = cache.get()
    topic = Topic.objects.create(key="zz-news", name="News")
    assert cache.get() == sorted([*before, "zz-news"])
    topic.delete()
    assert cache.get() == before
