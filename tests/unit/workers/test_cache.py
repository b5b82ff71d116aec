"""The cache with a fake factory and a fake RSS reader: no weights, no sleeps.

``FakeMemory`` stands for the process: building a model adds its size to RSS and
``close()`` takes it back, so measured RAM and the fall after an unload are real
numbers of the fake, checked the way the cache checks the real ones.
"""

import dataclasses
import logging
import threading

import numpy as np
import pytest

from tasks.contract.errors import ConfigError
from tasks.contract.settings import load_settings
from workers.config.loader import parse_model_config
from workers.errors import (
    ModelLoadError,
    ModelTooLargeError,
    NoRoomError,
    PermanentError,
    TransientError,
    UnknownModelError,
)
from workers.memory.eviction import POLICIES, eviction_order
from workers.memory.model_cache import ModelCache
from workers.models.base import BaseEmbeddingModel


class FakeMemory:
    def __init__(self) -> None:
        self.gb = 1.0

    def rss(self) -> float:
        return self.gb


class FakeModel(BaseEmbeddingModel):
    """Takes ``size`` GB of the fake process while alive; ``gate`` blocks encodes."""

    def __init__(self, name, spec, memory: FakeMemory, size: float, gate=None, fail=False):
        super().__init__(name, spec)
        self.memory, self.size, self.gate, self.fail = memory, size, gate, fail
        self.encoding = threading.Event()
        self.closed = False
        memory.gb += size

    def encode(self, sentences):
        if self.fail:
            raise RuntimeError("weights are garbage")
        if self.gate is not None and sentences != ["embedfleet warm-up"]:
            self.encoding.set()
            assert self.gate.wait(10)
        return np.ones((len(sentences), 4), dtype=np.float32)

    def close(self):
        self.closed = True
        self.memory.gb -= self.size


def _cache(ram, budget, policy="largest", preload=(), measured=None, fail=()):
    """A cache over models named in ``ram`` (configured GB); ``measured`` GB really taken."""
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
    memory = FakeMemory()
    built: list[str] = []
    gate = threading.Event()
    gate.set()
    models: dict[str, FakeModel] = {}

    def factory(name, spec):
        gate.wait(5)
        built.append(name)
        size = (measured or {}).get(name, 0.0)
        models[name] = FakeModel(name, spec, memory, size, fail=name in fail)
        return models[name]

    cache = ModelCache(config.models, budget, policy=policy, factory=factory, rss=memory.rss)
    cache.fake = dataclasses.make_dataclass("Fake", ["memory", "built", "gate", "models"])(
        memory, built, gate, models
    )
    return cache


def test_a_model_is_loaded_once_even_when_many_threads_ask():
    cache = _cache({"a": 1.0}, budget=4)
    cache.fake.gate.clear()
    threads = [threading.Thread(target=cache.load, args=("a",)) for _ in range(8)]
    for t in threads:
        t.start()
    cache.fake.gate.set()
    for t in threads:
        t.join()
    assert cache.fake.built == ["a"]
    assert cache.loads == 1
    assert cache.snapshot()[0]["hits"] == 8


def test_largest_goes_first_and_preloaded_last():
    cache = _cache({"big": 2.0, "mid": 1.5, "small": 0.5, "pre": 3.0}, budget=7.5, preload=("pre",))
    for name in ("pre", "big", "mid", "small"):
        cache.load(name)
    assert cache.free_memory(3.0) == ["big", "mid"]
    assert cache.loaded() == ["pre", "small"]
    assert cache.evictions == 2


def test_lru_policy_evicts_the_least_recently_used():
    cache = _cache({"a": 1.0, "b": 1.0, "c": 1.0}, budget=3, policy="lru")
    for name in ("a", "b", "c"):
        cache.load(name)
    cache.load("a")
    assert cache.free_memory(1.0) == ["b"]


@dataclasses.dataclass
class Row:
    name: str
    ram_gb: float
    last_used: float
    preload: bool = False


def test_policies_order_candidates_and_put_preloaded_last():
    rows = [Row("old-small", 1, 1), Row("new-big", 3, 9), Row("pre", 5, 0, True), Row("mid", 2, 5)]
    assert [r.name for r in eviction_order(rows, "largest")] == [
        "new-big",
        "mid",
        "old-small",
        "pre",
    ]
    assert [r.name for r in eviction_order(rows, "lru")] == ["old-small", "mid", "new-big", "pre"]


def test_policy_comes_from_the_settings_and_is_checked():
    assert load_settings({"EMBEDFLEET_EVICTION_POLICY": "LRU"}).eviction_policy == "lru"
    assert set(POLICIES) == {"largest", "lru"}  # what the settings accept
    with pytest.raises(ConfigError, match="EMBEDFLEET_EVICTION_POLICY='random'.*'largest'"):
        load_settings({"EMBEDFLEET_EVICTION_POLICY": "random"})


def test_making_room_for_a_load_evicts_by_policy():
    cache = _cache({"a": 1.0, "b": 1.0, "c": 1.0}, budget=2.5, policy="lru")
    for name in ("a", "b", "a", "c"):
        cache.load(name)
    assert cache.loaded() == ["a", "c"]
    assert (cache.loads, cache.evictions) == (3, 1)


def test_a_leased_model_is_never_evicted_and_no_room_is_transient():
    cache = _cache({"a": 1.0, "b": 1.0}, budget=1.5)
    with cache.lease("a"):
        assert cache.free_memory(1.5) == []
        with pytest.raises(NoRoomError, match="in use") as refused:
            cache.load("b")
    assert isinstance(refused.value, TransientError)  # the chunk task retries it later
    cache.load("b")  # once the lease ends, a is evicted to make room
    assert cache.loaded() == ["b"]


def test_a_model_encoding_in_another_thread_keeps_its_lease():
    # Given a task encoding with "a" in another thread (blocked mid-encode)
    cache = _cache({"a": 1.0, "b": 1.0}, budget=1.5)
    cache.load("a")
    model = cache.fake.models["a"]
    model.gate = threading.Event()
    done: list[np.ndarray] = []

    def task():
        with cache.lease("a") as leased:
            done.append(leased.encode(["hello"]))

    worker = threading.Thread(target=task)
    worker.start()
    assert model.encoding.wait(5)
    # When memory is wanted for "b", nothing is evicted and the load must wait
    assert cache.free_memory(2.0, reason="test") == []
    with pytest.raises(NoRoomError, match=r"needs 1\.00 GB; 0\.50 GB .* \(a\)"):
        cache.load("b")
    assert not model.closed
    # Then the task finishes on the model it leased, and "a" can go
    model.gate.set()
    worker.join(5)
    assert done and done[0].shape == (1, 4)
    cache.load("b")
    assert cache.loaded() == ["b"] and model.closed


def test_no_room_evicts_nothing_when_evicting_could_not_help():
    cache = _cache({"a": 1.0, "b": 0.5, "c": 1.5}, budget=2.0)
    cache.load("b")
    with cache.lease("a"):
        with pytest.raises(NoRoomError):
            cache.load("c")
        assert cache.loaded() == ["a", "b"]  # b stays: evicting it would not have fitted c
    assert cache.evictions == 0


def test_a_model_bigger_than_the_budget_fails_with_both_numbers():
    cache = _cache({"huge": 9.0}, budget=2.0)
    with pytest.raises(ModelTooLargeError, match=r"9\.00 GB.*2\.00 GB") as refused:
        cache.load("huge")
    assert isinstance(refused.value, PermanentError)  # the chunk fails, no retry
    assert cache.fake.built == []


def test_accounting_takes_the_measured_ram_when_it_is_larger():
    cache = _cache({"a": 0.5, "b": 1.0}, budget=2.5, measured={"a": 1.25, "b": 0.25})
    cache.load("a")
    cache.load("b")
    rows = {r["name"]: r for r in cache.snapshot()}
    assert rows["a"]["ram_gb_measured"] == pytest.approx(1.25)
    assert rows["b"]["ram_gb_measured"] == pytest.approx(0.25)
    assert cache.used_gb() == pytest.approx(1.25 + 1.0)  # max(config, measured) each


def test_a_load_measured_over_budget_evicts_at_once_to_get_back_inside():
    cache = _cache({"a": 0.5, "b": 0.5}, budget=2.0, measured={"a": 0.5, "b": 1.75})
    cache.load("a")
    cache.load("b")  # admitted at 0.5 GB configured, measured 1.75: 2.25 > 2.0
    assert cache.loaded() == ["b"]
    assert cache.used_gb() == pytest.approx(1.75)


def test_a_reload_asks_for_what_the_model_took_last_time():
    cache = _cache({"a": 0.5, "b": 1.0}, budget=2.0, measured={"a": 1.5})
    cache.load("a")
    cache.load("b")  # a accounted 1.5 + b 1.0 > 2.0: a made room
    assert cache.loaded() == ["b"]
    cache.load("a")  # needs 1.5 (measured), not 0.5 (configured): b must go first
    assert cache.loaded() == ["a"]


def test_a_model_measured_above_the_whole_budget_is_then_refused_with_both_numbers():
    cache = _cache({"a": 1.0}, budget=2.0, measured={"a": 3.0})
    cache.load("a")  # configured 1.0 fits; measured 3.0 does not
    assert cache.free_memory(0.0, reason="watchdog") == ["a"]
    with pytest.raises(ModelTooLargeError, match=r"3\.00 GB.*2\.00 GB"):
        cache.load("a")


def test_the_wrapper_import_is_not_counted_as_model_ram():
    cache = _cache({"a": 0.1}, budget=2.0, measured={"a": 0.25})
    memory = cache.fake.memory
    cache._prepare = lambda spec: setattr(memory, "gb", memory.gb + 0.5)  # import torch...
    cache.load("a")
    assert cache.snapshot()[0]["ram_gb_measured"] == pytest.approx(0.25)


def test_a_model_that_cannot_encode_fails_at_load_and_is_closed():
    cache = _cache({"a": 1.0}, budget=2.0, fail=("a",))
    with pytest.raises(ModelLoadError, match="cannot encode: weights are garbage"):
        cache.load("a")
    assert cache.fake.models["a"].closed
    assert cache.loaded() == [] and cache.used_gb() == 0


def test_unknown_model():
    cache = _cache({"a": 1.0}, budget=2.0)
    with pytest.raises(UnknownModelError, match="known: a"):
        cache.load("zzz")


def test_unload_waits_for_the_last_lease():
    cache = _cache({"a": 1.0}, budget=2.0)
    with cache.lease("a") as model:
        cache.unload("a")
        assert cache.loaded() == []
        assert model.encode(["still works"]).shape == (1, 4)
        assert cache.used_gb() == 1.0
    assert cache.used_gb() == 0.0
    assert cache.fake.models["a"].closed


def test_snapshot_rows_carry_the_contract_keys():
    cache = _cache({"a": 0.5, "b": 0.5}, budget=2.0, measured={"a": 0.75})
    cache.load("a")
    cache.load("a")
    rows = {r["name"]: r for r in cache.snapshot()}
    assert set(rows["a"]) >= {
        "name", "type", "loaded", "ram_gb_config", "ram_gb_measured", "hits", "last_used",
        "leases", "load_seconds",
    }  # fmt: skip
    assert rows["a"]["loaded"] and rows["a"]["hits"] == 2 and rows["a"]["leases"] == 0
    assert rows["a"]["ram_gb_measured"] == pytest.approx(0.75)
    assert rows["a"]["last_used"] > 0 and rows["a"]["load_seconds"] >= 0
    assert rows["b"] == {**rows["b"], "loaded": False, "ram_gb_measured": None, "hits": 0}


def test_each_decision_is_logged_once_with_its_numbers(caplog):
    cache = _cache({"a": 1.0, "b": 1.0}, budget=1.5, measured={"a": 0.8, "b": 0.6})
    with caplog.at_level(logging.INFO, logger="workers.memory.model_cache"):
        cache.load("a")
        cache.load("b")
    loaded = [r.getMessage() for r in caplog.records if "event=model_loaded" in r.getMessage()]
    evicted = [r.getMessage() for r in caplog.records if "event=model_evicted" in r.getMessage()]
    assert len(loaded) == 2 and len(evicted) == 1
    assert "model=a" in loaded[0] and "ram_gb_measured=0.800" in loaded[0]
    line = evicted[0]
    for part in (
        "model=a",
        "reason='make room for b (1.00 GB)'",
        "used_gb_before=1.000",
        "used_gb_after=0.000",
        "rss_gb_before=1.800",
        "rss_gb_after=1.000",
        "rss_gb_freed=0.800",
    ):
        assert part in line


def test_a_model_held_outside_the_cache_is_reported(caplog):
    cache = _cache({"a": 1.0}, budget=2.0)
    kept = cache.load("a")  # load() keeps no lease, but this caller keeps the object
    with caplog.at_level(logging.WARNING, logger="workers.memory.loading"):
        cache.unload("a")
    assert "event=model_still_referenced model=a" in caplog.text
    assert kept.closed


class _Holds64MB(BaseEmbeddingModel):
    """A model whose weights are 64 MB of touched pages (its RSS growth is its size)."""

    def __init__(self, name, spec):
        self.name, self.spec = name, spec
        self.weights = np.ones(64 * 2**20 // 8)

    def encode(self, sentences):
        return np.zeros((len(sentences), 4), dtype=np.float32)

    def held_bytes(self):
        return {"objects": 1024}  # says little: the RSS growth must carry the figure

    def close(self):
        self.weights = None


def test_freed_heap_from_before_a_load_does_not_shrink_its_measured_growth():
    from workers.memory.loading import load_measured
    from workers.memory.readings import rss_gb

    spec = parse_model_config(
        {"m": {"type": "tests.plugins:HashModel", "model_path": "-", "RAM": 0.1}}
    )["m"]
    # Given a heap that earlier work freed but kept (1 KB blocks: malloc, not pymalloc;
    # a block still held above them, so free() cannot trim the top of the heap)
    blocks = [bytes(1024) for _ in range(200_000)]
    held = bytes(1024)
    del blocks
    # When a model holding 64 MB is loaded and measured
    entry, before, after = load_measured("m", spec, _Holds64MB, rss_gb)
    # Then its RSS growth is what it took, not that less the heap given back meanwhile
    assert entry.ram_rss_gb > 0.05, (before, after)
    assert held
