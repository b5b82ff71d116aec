"""The cache with a fake factory and an injected RSS reader: no weights, no sleeps."""

import threading

import numpy as np
import pytest

from workers.cache import ModelCache
from workers.config import parse_model_config
from workers.errors import ModelTooLargeError, NoRoomError, UnknownModelError
from workers.models.base import BaseEmbeddingModel


class FakeModel(BaseEmbeddingModel):
    def encode(self, sentences):
        return np.ones((len(sentences), 4), dtype=np.float32)


def _cache(ram: dict[str, float], budget: float, policy: str = "largest", preload=()):
    config = parse_model_config(
        {
            name: {
                "type": "tests.plugins:HashModel",
                "model_path": "x",
                "RAM": gb,
                "preload": name in preload,
            }
            for name, gb in ram.items()
        }
    )
    built: list[str] = []
    gate = threading.Event()
    gate.set()

    def factory(name, spec):
        gate.wait(5)
        built.append(name)
        return FakeModel(name, spec)

    cache = ModelCache(config.models, budget, policy=policy, factory=factory, rss=lambda: 1.0)
    return cache, built, gate


def test_a_model_is_loaded_once_even_when_many_threads_ask():
    cache, built, gate = _cache({"a": 1.0}, budget=4)
    gate.clear()
    threads = [threading.Thread(target=cache.load, args=("a",)) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert built == ["a"]
    assert cache.snapshot()[0]["hits"] == 8


def test_largest_goes_first_and_preloaded_last():
    cache, _, _ = _cache(
        {"big": 2.0, "mid": 1.5, "small": 0.5, "pre": 3.0}, budget=7.5, preload=("pre",)
    )
    for name in ("pre", "big", "mid", "small"):
        cache.load(name)
    assert cache.free_memory(3.0) == ["big", "mid"]
    assert cache.loaded() == ["pre", "small"]


def test_lru_policy_evicts_the_least_recently_used():
    cache, _, _ = _cache({"a": 1.0, "b": 1.0, "c": 1.0}, budget=3, policy="lru")
    for name in ("a", "b", "c"):
        cache.load(name)
    cache.load("a")
    assert cache.free_memory(1.0) == ["b"]


def test_a_leased_model_is_never_evicted_and_no_room_is_transient():
    cache, _, _ = _cache({"a": 1.0, "b": 1.0}, budget=1.5)
    with cache.lease("a"):
        assert cache.free_memory(1.5) == []
        with pytest.raises(NoRoomError, match="in use"):
            cache.load("b")
    cache.load("b")  # once the lease ends, a is evicted to make room
    assert cache.loaded() == ["b"]


def test_a_model_bigger_than_the_budget_fails_with_both_numbers():
    cache, _, _ = _cache({"huge": 9.0}, budget=2.0)
    with pytest.raises(ModelTooLargeError, match=r"9\.00 GB.*2\.00 GB"):
        cache.load("huge")


def test_unknown_model():
    cache, _, _ = _cache({"a": 1.0}, budget=2.0)
    with pytest.raises(UnknownModelError, match="known: a"):
        cache.load("zzz")


def test_unload_waits_for_the_last_lease():
    cache, _, _ = _cache({"a": 1.0}, budget=2.0)
    with cache.lease("a") as model:
        cache.unload("a")
        assert cache.loaded() == []
        assert model.encode(["still works"]).shape == (1, 4)
        assert cache.used_gb() == 1.0
    assert cache.used_gb() == 0.0
