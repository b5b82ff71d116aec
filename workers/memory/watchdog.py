"""The memory watchdog: a thread that decides *when* memory is short.

Every ``EMBEDFLEET_WATCHDOG_INTERVAL_S`` seconds (default 5) :meth:`check_once` compares
two readings and evicts idle models (``ModelCache.free_memory``, in policy order) when
either is short:

- the models' accounted total against the cache's budget (a model measured above its
  configured ``RAM``, a budget lowered under it);
- the memory actually available (cgroup limit less working set in a container, else the
  host's available memory; ``workers.memory.readings.available_gb``) against a floor
  (``EMBEDFLEET_MEMORY_FLOOR_GB``, default the smaller of 0.5 GB and 5% of the limit):
  it frees the shortfall.

``run()`` is only the loop around ``check_once()``; tests call ``check_once()`` with
injected readings, no sleeps. What it decides is emitted as events
(``watchdog_short``, ``watchdog_recovered``; ``workers.observability.events``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.contract.logs import event_logger
from workers.memory.model_cache import ModelCache
from workers.memory.readings import available_gb, memory_floor_gb
from workers.observability.events import (
    Events,
    WatchdogRecovered,
    WatchdogShort,
    WatchdogStarted,
)
from workers.observability.process_events import logged_events

log = event_logger(__name__)

DEFAULT_INTERVAL_S = 5.0  # seconds between checks


@dataclass
class Check:
    """One check's readings (GB) and what it did."""

    used_gb: float
    budget_gb: float
    available_gb: float
    floor_gb: float
    reasons: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)

    @property
    def short(self) -> bool:
        return bool(self.reasons)


class MemoryWatchdog(threading.Thread):
    """Evicts idle models when the cache is over budget or available memory is low."""

    def __init__(
        self,
        cache: ModelCache | Callable[[], ModelCache],
        interval_s: float | None = None,
        floor_gb: float | None = None,
        available: Callable[[], float] = available_gb,
        events: Events | None = None,
    ) -> None:
        super().__init__(name="embedfleet-watchdog", daemon=True)
        self._cache = cache
        self.interval_s = interval_s if interval_s is not None else DEFAULT_INTERVAL_S
        self.floor_gb = floor_gb if floor_gb is not None else memory_floor_gb()
        self._available = available
        self.events = events if events is not None else logged_events()
        self._stopped = threading.Event()
        #: Loaded models when last short with nothing to evict: warn once per such state.
        self._stuck: tuple[str, ...] | None = None
        self.checks = 0

    @property
    def cache(self) -> ModelCache:
        return self._cache if isinstance(self._cache, ModelCache) else self._cache()

    def run(self) -> None:
        self.events.emit(WatchdogStarted(self.interval_s, self.floor_gb, self.cache.budget_gb))
        while not self._stopped.is_set():
            try:
                self.check_once()
            except Exception:  # a failed reading must not end the watch
                log.exception("event=watchdog_error")
            self._stopped.wait(self.interval_s)

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join(timeout)

    def check_once(self) -> Check:
        """Read, decide, evict if short; returns what it saw and did."""
        self.checks += 1
        cache = self.cache
        check = Check(cache.used_gb(), cache.budget_gb, self._available(), self.floor_gb)
        if check.used_gb > check.budget_gb:
            check.reasons.append("over budget")
            check.evicted += cache.free_memory(0.0, reason="watchdog: models over budget")
        available = self._available() if check.evicted else check.available_gb
        if available < check.floor_gb:
            shortfall = check.floor_gb - available
            check.reasons.append("low available memory")
            # free_memory frees until the budget has this much free: the room there is
            # now, plus the shortfall.
            required = max(0.0, cache.budget_gb - cache.used_gb()) + shortfall
            check.evicted += cache.free_memory(
                required, reason=f"watchdog: available memory below floor by {shortfall:.3f} GB"
            )
        if check.short:
            self._report(check, cache)
        elif self._stuck is not None:
            self._stuck = None
            self.events.emit(WatchdogRecovered(check.used_gb, check.available_gb))
        return check

    def _report(self, check: Check, cache: ModelCache) -> None:
        loaded = cache.loaded()
        stuck = None if check.evicted else tuple(loaded)
        if stuck is not None and stuck == self._stuck:
            return  # already said so for these models; evicting nothing changes nothing
        self._stuck = stuck
        self.events.emit(
            WatchdogShort(
                reasons=tuple(check.reasons),
                used_gb_before=check.used_gb,
                used_gb_after=cache.used_gb(),
                budget_gb=check.budget_gb,
                available_gb_before=check.available_gb,
                available_gb_after=self._available(),
                floor_gb=check.floor_gb,
                evicted=tuple(check.evicted),
                loaded=tuple(loaded),
                stuck=stuck is not None,
            )
        )
