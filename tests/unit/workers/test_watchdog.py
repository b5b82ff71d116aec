"""The watchdog's check_once() with injected readings: no threads, no sleeps (but one
test that the thread runs the loop and stops)."""

import logging
import threading

import pytest

from tasks.contract.errors import ConfigError
from tasks.contract.settings import load_settings
from tests.unit.workers.test_cache import _cache
from workers.memory.watchdog import DEFAULT_INTERVAL_S, MemoryWatchdog


def _loaded(ram, budget, policy="largest", **kw):
    cache = _cache(ram, budget, policy=policy, **kw)
    for name in ram:
        cache.load(name)
    return cache


def test_nothing_happens_when_memory_is_fine():
    cache = _loaded({"a": 1.0, "b": 1.0}, budget=4.0)
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=0.5, available=lambda: 8.0)
    check = dog.check_once()
    assert not check.short and check.evicted == []
    assert (check.used_gb, check.budget_gb, check.available_gb, check.floor_gb) == (2, 4, 8, 0.5)
    assert cache.loaded() == ["a", "b"]


def test_low_available_memory_evicts_the_shortfall_in_policy_order():
    # Given 3 GB of models in a 10 GB budget, and the machine 0.8 GB short of its floor
    cache = _loaded({"a": 0.5, "b": 2.0, "c": 0.5}, budget=10.0)
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=1.0, available=lambda: 0.2)
    # When the watchdog checks
    check = dog.check_once()
    # Then the largest model goes (2 GB covers the 0.8 GB shortfall), and only it
    assert check.reasons == ["low available memory"]
    assert check.evicted == ["b"]
    assert cache.loaded() == ["a", "c"]


def test_a_larger_shortfall_takes_more_models_under_lru():
    cache = _loaded({"a": 1.0, "b": 1.0, "c": 1.0}, budget=10.0, policy="lru")
    cache.load("a")  # a is now the most recently used
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=2.0, available=lambda: 0.5)
    assert dog.check_once().evicted == ["b", "c"]  # 1.5 GB short: two models


def test_models_over_budget_are_evicted_back_inside_it():
    cache = _loaded({"a": 1.0, "b": 1.0}, budget=4.0)
    cache.budget_gb = 1.5  # e.g. measured sizes grew, or a smaller limit
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=0.5, available=lambda: 8.0)
    check = dog.check_once()
    assert check.reasons == ["over budget"] and len(check.evicted) == 1
    assert cache.used_gb() <= 1.5


def test_preloaded_models_go_last():
    cache = _loaded({"pre": 3.0, "small": 0.5}, budget=10.0, preload=("pre",))
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=1.0, available=lambda: 0.9)
    assert dog.check_once().evicted == ["small"]


def test_leased_models_stay_and_the_warning_is_said_once_per_state(caplog):
    cache = _loaded({"a": 1.0, "b": 1.0}, budget=4.0)
    cache.unload("b")
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=1.0, available=lambda: 0.1)
    with caplog.at_level(logging.INFO, logger="workers.memory.watchdog"), cache.lease("a"):
        first, second = dog.check_once(), dog.check_once()
        with cache.lease("b"):  # a new model in use: a new state, said again
            third = dog.check_once()
    assert first.short and [first.evicted, second.evicted, third.evicted] == [[], [], []]
    warnings = [r for r in caplog.records if "event=watchdog_short" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert "available_gb_before=0.100" in warnings[0].getMessage()
    assert warnings[0].getMessage().endswith("evicted=none (in use: a)")
    assert warnings[1].getMessage().endswith("evicted=none (in use: a,b)")
    assert cache.loaded() == ["a", "b"]
    # once the leases are gone, the next check evicts: one of the equals covers 0.9 GB,
    # b (whose lease ended first)
    assert dog.check_once().evicted == ["b"]


def test_short_with_nothing_loaded_is_said_once_and_recovery_too(caplog):
    cache = _cache({"a": 1.0}, budget=4.0)
    readings = iter([0.1, 0.1, 0.1, 5.0])
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=1.0, available=lambda: next(readings))
    with caplog.at_level(logging.INFO, logger="workers.memory.watchdog"):
        dog.check_once()  # reads before and after
        dog.check_once()  # same state: silent
        assert not dog.check_once().short
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].endswith("evicted=none (no model loaded)")
    assert messages[1].startswith("event=watchdog_recovered")


def test_the_decision_is_logged_with_its_numbers(caplog):
    cache = _loaded({"a": 2.0}, budget=10.0)
    readings = iter([0.25, 2.25])  # before and after the eviction
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=1.0, available=lambda: next(readings))
    with caplog.at_level(logging.INFO):
        dog.check_once()
    line = next(r.getMessage() for r in caplog.records if "watchdog_short" in r.getMessage())
    for part in ("reasons=low available memory", "used_gb_before=2.000", "used_gb_after=0.000",
                 "available_gb_before=0.250", "available_gb_after=2.250", "evicted=a"):  # fmt: skip
        assert part in line
    assert "event=model_evicted model=a reason='watchdog: available memory below floor" in (
        caplog.text
    )


def test_the_cache_may_be_given_as_a_getter():
    cache = _loaded({"a": 1.0}, budget=4.0)
    dog = MemoryWatchdog(lambda: cache, interval_s=1, floor_gb=2.0, available=lambda: 0.0)
    assert dog.check_once().evicted == ["a"]


def test_the_thread_runs_checks_until_stopped():
    cache = _loaded({"a": 1.0}, budget=4.0)
    calls: list[int] = []
    two_checks = threading.Event()

    def available() -> float:
        calls.append(1)
        if len(calls) >= 2:
            two_checks.set()
        return 8.0

    dog = MemoryWatchdog(cache, interval_s=0.01, floor_gb=0.5, available=available)
    dog.start()
    assert dog.daemon and dog.name == "embedfleet-watchdog"
    assert two_checks.wait(10)
    dog.stop()
    assert dog.checks >= 2 and not dog.is_alive()


def test_interval_from_the_settings():
    assert load_settings({}).watchdog_interval_s == DEFAULT_INTERVAL_S == 5.0
    assert load_settings({"EMBEDFLEET_WATCHDOG_INTERVAL_S": "0.5"}).watchdog_interval_s == 0.5
    with pytest.raises(ConfigError, match="^EMBEDFLEET_WATCHDOG_INTERVAL_S='0': "):
        load_settings({"EMBEDFLEET_WATCHDOG_INTERVAL_S": "0"})
