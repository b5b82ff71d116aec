"""The model cache: what is loaded, who is using it, and what it really costs.

Contract: each model is loaded once even when many tasks ask at once; a task holds a
*lease* while it encodes, and a leased model is never unloaded. Memory is accounted per
model as the larger of its configured ``RAM`` and what was measured at its load: what
the runtime says the model holds (tensors, initializers, tokenizer) or the RSS growth
over the load and one warm-up encode, whichever is larger (``workers.memory.loading``). Before a load the cache makes room inside its
budget (``free_memory``); the watchdog (``workers.memory.watchdog``) calls the same
``free_memory`` when the process runs short. Every load and unload is emitted once as an
event (``workers.observability.events``), with the model, the reason and the RAM before
and after; the log line and the metrics are the event's subscribers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tasks.contract.spec import ModelSpec
from workers.errors import ModelTooLargeError, NoRoomError, UnknownModelError
from workers.memory.eviction import eviction_order
from workers.memory.loading import CachedModel, Factory, import_type, let_go, load_measured
from workers.memory.readings import rss_gb
from workers.models.base import BaseEmbeddingModel
from workers.models.registry import build_model
from workers.observability.events import (
    Events,
    ModelEvicted,
    ModelLoaded,
    ModelRetired,
    ModelStillReferenced,
    ModelUnloaded,
)
from workers.observability.process_events import logged_events

__all__ = ["CachedModel", "ModelCache"]


class ModelCache:
    """Loaded models of one worker process, kept inside ``budget_gb``."""

    def __init__(
        self,
        specs: Mapping[str, ModelSpec],
        budget_gb: float,
        policy: str = "largest",
        factory: Factory = build_model,
        rss: Callable[[], float] = rss_gb,
        prepare: Callable[[ModelSpec], object] = import_type,
        events: Events | None = None,
    ) -> None:
        self.specs = specs  # replaced whole by a reload (workers.serving.runtime)
        self.budget_gb = budget_gb
        self.policy = policy
        self._factory = factory
        self._rss = rss
        self._prepare = prepare
        self.events = events if events is not None else logged_events()
        self._entries: dict[str, CachedModel] = {}
        self._retired: list[CachedModel] = []
        #: Last RAM measured per model, with the spec it was measured for: admission
        #: of a reload asks for what the model really took last time.
        self._measured: dict[str, tuple[ModelSpec, float]] = {}
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
            self._spec(name)
        with self._load_lock:
            with self._lock:
                # Double check: another task may have loaded it while we waited.
                entry = self._take(name)
                if entry is not None:
                    return entry
                spec = self._spec(name)  # a reload may have changed it meanwhile
            self._make_room(name, spec)
            entry = self._load(name, spec)
        if self.used_gb() > self.budget_gb:  # measured above configured: back inside
            self.free_memory(0.0, reason=f"{name} measured above its configured RAM")
        return entry

    def _spec(self, name: str) -> ModelSpec:
        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise UnknownModelError(f"model {name!r} is not configured here; known: {known}")
        return spec

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
            self._unload(entry, "retired: its last lease ended")

    def _load(self, name: str, spec: ModelSpec) -> CachedModel:
        self._prepare(spec)
        used_before = self.used_gb()
        entry, before, after = load_measured(name, spec, self._factory, self._rss)
        seconds = entry.load_seconds
        with self._lock:
            self._entries[name] = entry
            self._measured[name] = (spec, entry.ram_measured_gb)
            self.loads += 1
            loaded = len(self._entries)
        self.events.emit(
            ModelLoaded(
                model=name,
                type=spec.type,
                seconds=seconds,
                ram_gb_config=spec.RAM,
                ram_gb_measured=entry.ram_measured_gb,
                ram_method=entry.ram_method,
                ram_gb=entry.ram_gb,
                used_gb_before=used_before,
                used_gb_after=self.used_gb(),
                budget_gb=self.budget_gb,
                rss_gb_before=before,
                rss_gb_after=after,
                models_loaded=loaded,
                precision=precision_fields(entry.model)["precision"],
            )
        )
        return entry

    # -- memory ------------------------------------------------------------------
    def used_gb(self) -> float:
        """RAM accounted to loaded models (retired ones still leased included)."""
        with self._lock:
            return sum(e.ram_gb for e in [*self._entries.values(), *self._retired])

    def expected_gb(self, name: str, spec: ModelSpec) -> float:
        """What loading ``name`` will cost: configured RAM, or more if measured so."""
        seen = self._measured.get(name)
        measured = seen[1] if seen and seen[0] == spec else 0.0
        return max(spec.RAM, measured)

    def _make_room(self, name: str, spec: ModelSpec) -> None:
        """Admission: evict idle models so ``name`` fits, or say why it cannot now."""
        need = self.expected_gb(name, spec)
        if need > self.budget_gb:
            raise ModelTooLargeError(
                f"model {name!r} needs {need:.2f} GB but the worker's memory budget is "
                f"{self.budget_gb:.2f} GB (EMBEDFLEET_MEMORY_LIMIT_GB / cgroup limit)"
            )
        with self._lock:
            free = self.budget_gb - self.used_gb()
            if free >= need:
                return
            idle_gb = sum(e.ram_gb for e in self._entries.values() if e.leases == 0)
        if free + idle_gb >= need:  # evict only when it can help
            self.free_memory(need, reason=f"make room for {name} ({need:.2f} GB)")
        with self._lock:
            free = self.budget_gb - self.used_gb()
            if free < need:
                in_use = [e.name for e in [*self._entries.values(), *self._retired] if e.leases]
                raise NoRoomError(
                    f"model {name!r} needs {need:.2f} GB; {free:.2f} GB of the "
                    f"{self.budget_gb:.2f} GB budget is free and the loaded models in use "
                    f"({', '.join(sorted(in_use)) or 'none'}) cannot be unloaded now"
                )

    def free_memory(self, required_ram_gb: float, reason: str = "free_memory") -> list[str]:
        """Unload idle models, in policy order, until ``required_ram_gb`` fits the budget.

        Returns the names unloaded. Leased models are never unloaded.
        """
        victims: list[tuple[CachedModel, float, float]] = []
        with self._lock:
            used = self.used_gb()
            idle = [e for e in self._entries.values() if e.leases == 0]
            for entry in eviction_order(idle, self.policy):
                if self.budget_gb - used >= required_ram_gb:
                    break
                del self._entries[entry.name]
                victims.append((entry, used, used - entry.ram_gb))
                used -= entry.ram_gb
                self.evictions += 1
        for entry, used_before, used_after in victims:
            rss_before, rss_after = self._let_go(entry)
            self.events.emit(
                ModelEvicted(
                    model=entry.name,
                    reason=reason,
                    ram_gb=entry.ram_gb,
                    ram_gb_measured=entry.ram_measured_gb,
                    policy=self.policy,
                    required_gb=required_ram_gb,
                    used_gb_before=used_before,
                    used_gb_after=used_after,
                    budget_gb=self.budget_gb,
                    rss_gb_before=rss_before,
                    rss_gb_after=rss_after,
                )
            )
        return [entry.name for entry, _, _ in victims]

    def unload(self, name: str, reason: str = "unload") -> None:
        """Drop ``name``: now if idle, else as soon as its last lease ends."""
        with self._lock:
            entry = self._entries.pop(name, None)
            if entry is None:
                return
            leases = entry.leases
            if leases:
                entry.retired = True
                self._retired.append(entry)
        if leases:  # subscribers are called outside the lock
            self.events.emit(ModelRetired(model=name, reason=reason, leases=leases))
            return
        self._unload(entry, reason)

    def _unload(self, entry: CachedModel, reason: str) -> None:
        rss_before, rss_after = self._let_go(entry)
        self.events.emit(
            ModelUnloaded(
                model=entry.name,
                reason=reason,
                ram_gb=entry.ram_gb,
                ram_gb_measured=entry.ram_measured_gb,
                rss_gb_before=rss_before,
                rss_gb_after=rss_after,
            )
        )

    def _let_go(self, entry: CachedModel) -> tuple[float, float]:
        """Let the model go (``workers.memory.loading.let_go``); (RSS before, after)."""
        before, after, holders = let_go(entry, self._rss)
        if holders is not None:
            self.events.emit(ModelStillReferenced(model=entry.name, referrers=holders))
        return before, after

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
                        "ram_gb_measured": _measured_gb(entry),
                        "ram_method": entry.ram_method if entry else None,
                        "hits": entry.hits if entry else 0,
                        "last_used": entry.last_used if entry else None,
                        "leases": entry.leases if entry else 0,
                        "load_seconds": round(entry.load_seconds, 3) if entry else None,
                        **precision_fields(entry.model if entry else None),
                    }
                )
            return rows


def _measured_gb(entry: CachedModel | None) -> float | None:
    """A loaded local model's measured RAM; None when not loaded or remote."""
    if entry is None or entry.ram_method == "remote":
        return None
    return round(entry.ram_measured_gb, 6)  # GB to the KB: a tiny model is not 0


def precision_fields(model: BaseEmbeddingModel | None) -> dict[str, Any]:
    """The load record's precision in effect and fidelity probe minimum (None: n/a)."""
    record = model.precision_record if model is not None else None
    return {
        "precision": record.precision if record else None,
        "probe_min_cosine": (
            round(record.probe_min_cosine, 6)
            if record and record.probe_min_cosine is not None
            else None
        ),
    }
