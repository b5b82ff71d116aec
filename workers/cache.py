"""The model cache: what is loaded, who is using it, and what it really costs.

Contract: each model is loaded once even when many tasks ask at once; a task holds a
*lease* while it encodes, and a leased model is never unloaded. Memory is accounted per
model as the larger of its configured ``RAM`` and the RSS growth measured at load.
Before a load the cache makes room inside its budget (``free_memory``); the watchdog
(``workers.watchdog``) calls the same ``free_memory`` when the process runs short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from workers.config import ModelSpec
from workers.errors import ModelTooLargeError, NoRoomError, UnknownModelError
from workers.eviction import eviction_order
from workers.memory import release_memory, rss_gb
from workers.models.base import BaseEmbeddingModel
from workers.models.registry import build_model

log = logging.getLogger(__name__)


@dataclass
class CachedModel:
    """A loaded model and its bookkeeping."""

    name: str
    spec: ModelSpec
    model: BaseEmbeddingModel
    ram_measured_gb: float
    load_seconds: float
    last_used: float = field(default_factory=time.time)
    hits: int = 0
    leases: int = 0
    retired: bool = False  # replaced or removed by a reload: unload when leases end

    @property
    def ram_gb(self) -> float:
        """RAM accounted for this model: configured or measured, whichever is larger."""
        return max(self.spec.RAM, self.ram_measured_gb)

    @property
    def preload(self) -> bool:
        return self.spec.preload


class ModelCache:
    """Loaded models of one worker process, kept inside ``budget_gb``."""

    def __init__(
        self,
        specs: Mapping[str, ModelSpec],
        budget_gb: float,
        policy: str = "largest",
        factory: Callable[[str, ModelSpec], BaseEmbeddingModel] = build_model,
        rss: Callable[[], float] = rss_gb,
    ) -> None:
        self.specs = specs
        self.budget_gb = budget_gb
        self.policy = policy
        self._factory = factory
        self._rss = rss
        self._entries: dict[str, CachedModel] = {}
        self._retired: list[CachedModel] = []
        self._lock = threading.RLock()  # guards the dicts; never held while loading
        self._load_lock = threading.Lock()  # one load at a time, so RSS deltas are clean
        self.loads = 0
        self.evictions = 0

    # -- leasing -----------------------------------------------------------------
    @contextmanager
    def lease(self, name: str) -> Iterator[BaseEmbeddingModel]:
        """Hold model ``name`` (loading it if needed) for the duration of the block."""
        entry = self._acquire(name)
        try:
            yield entry.model
        finally:
            self._release(entry)

    def load(self, name: str) -> BaseEmbeddingModel:
        """Make sure ``name`` is loaded and return it (no lease is kept)."""
        with self.lease(name) as model:
            return model

    def _acquire(self, name: str) -> CachedModel:
        with self._lock:
            entry = self._take(name)
            if entry is not None:
                return entry
            spec = self.specs.get(name)
            if spec is None:
                known = ", ".join(sorted(self.specs)) or "none"
                raise UnknownModelError(f"model {name!r} is not configured here; known: {known}")
        with self._load_lock:
            with self._lock:
                # Double check: another task may have loaded it while we waited.
                entry = self._take(name)
                if entry is not None:
                    return entry
                self._make_room(name, spec)
            entry = self._load(name, spec)
            with self._lock:
                self._entries[name] = entry
            return entry

    def _take(self, name: str) -> CachedModel | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        entry.leases += 1
        entry.hits += 1
        entry.last_used = time.time()
        return entry

    def _release(self, entry: CachedModel) -> None:
        with self._lock:
            entry.leases -= 1
            entry.last_used = time.time()
            finished = entry.retired and entry.leases == 0
            if finished and entry in self._retired:
                self._retired.remove(entry)
        if finished:
            self._dispose(entry, reason="retired")

    def _load(self, name: str, spec: ModelSpec) -> CachedModel:
        before = self._rss()
        started = time.perf_counter()
        log.info(
            "event=model_loading model=%s type=%s ram_gb_config=%.2f", name, spec.type, spec.RAM
        )
        model = self._factory(name, spec)
        seconds = time.perf_counter() - started
        measured = max(0.0, self._rss() - before)
        self.loads += 1
        log.info(
            "event=model_loaded model=%s seconds=%.2f ram_gb_config=%.2f ram_gb_measured=%.3f",
            name,
            seconds,
            spec.RAM,
            measured,
        )
        return CachedModel(name, spec, model, measured, seconds, hits=1, leases=1)

    # -- memory ------------------------------------------------------------------
    def used_gb(self) -> float:
        """RAM accounted to loaded models (retired ones still leased included)."""
        with self._lock:
            return sum(e.ram_gb for e in [*self._entries.values(), *self._retired])

    def _make_room(self, name: str, spec: ModelSpec) -> None:
        if spec.RAM > self.budget_gb:
            raise ModelTooLargeError(
                f"model {name!r} needs {spec.RAM:.2f} GB but the worker's memory budget is "
                f"{self.budget_gb:.2f} GB (EMBEDFLEET_MEMORY_LIMIT_GB / cgroup limit)"
            )
        free = self.budget_gb - self.used_gb()
        if free >= spec.RAM:
            return
        self.free_memory(spec.RAM, reason=f"load {name}")
        free = self.budget_gb - self.used_gb()
        if free < spec.RAM:
            raise NoRoomError(
                f"model {name!r} needs {spec.RAM:.2f} GB; {free:.2f} GB of the "
                f"{self.budget_gb:.2f} GB budget is free and the loaded models are in use"
            )

    def free_memory(self, required_ram_gb: float, reason: str = "free_memory") -> list[str]:
        """Unload idle models, in policy order, until ``required_ram_gb`` fits the budget.

        Returns the names unloaded. Leased models are never unloaded.
        """
        evicted: list[str] = []
        with self._lock:
            idle = [e for e in self._entries.values() if e.leases == 0]
            for entry in eviction_order(idle, self.policy):
                if self.budget_gb - self.used_gb() >= required_ram_gb:
                    break
                del self._entries[entry.name]
                evicted.append(entry.name)
                self.evictions += 1
                log.info(
                    "event=model_evict model=%s reason=%r policy=%s ram_gb=%.3f "
                    "required_gb=%.2f used_gb=%.2f budget_gb=%.2f",
                    entry.name,
                    reason,
                    self.policy,
                    entry.ram_gb,
                    required_ram_gb,
                    self.used_gb(),
                    self.budget_gb,
                )
                self._dispose(entry, reason="evicted")
        return evicted

    def unload(self, name: str, reason: str = "unload") -> None:
        """Drop ``name``: now if idle, else as soon as its last lease ends."""
        with self._lock:
            entry = self._entries.pop(name, None)
            if entry is None:
                return
            if entry.leases:
                entry.retired = True
                self._retired.append(entry)
                return
        self._dispose(entry, reason=reason)

    def _dispose(self, entry: CachedModel, reason: str) -> None:
        before = self._rss()
        entry.model.close()
        entry.model = None  # type: ignore[assignment]
        release_memory()
        log.info(
            "event=model_unloaded model=%s reason=%s rss_gb_before=%.3f rss_gb_after=%.3f",
            entry.name,
            reason,
            before,
            self._rss(),
        )

    # -- introspection -------------------------------------------------------------
    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def snapshot(self) -> list[dict[str, Any]]:
        """One row per configured model: loaded state, RAM configured vs measured, hits."""
        with self._lock:
            rows = []
            for name, spec in sorted(self.specs.items()):
                entry = self._entries.get(name)
                rows.append(
                    {
                        "name": name,
                        "type": spec.type,
                        "loaded": entry is not None,
                        "ram_gb_config": spec.RAM,
                        "ram_gb_measured": round(entry.ram_measured_gb, 4) if entry else None,
                        "hits": entry.hits if entry else 0,
                        "last_used": entry.last_used if entry else None,
                        "leases": entry.leases if entry else 0,
                    }
                )
            return rows


def load_embedding_model(name: str) -> BaseEmbeddingModel:
    """The seed's entry point: the loaded model ``name`` from this process's cache."""
    from workers.runtime import get_runtime

    return get_runtime().cache.load(name)


def free_memory(required_ram_gb: float) -> list[str]:
    """The seed's entry point: unload models, highest RAM first, until the budget has
    ``required_ram_gb`` free. Returns the models unloaded."""
    from workers.runtime import get_runtime

    return get_runtime().cache.free_memory(required_ram_gb)
