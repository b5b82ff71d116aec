"""Loading and letting go of one model, measured: the cache's mechanics, kept apart from
its policy (what to keep) so each reads on its own.

A load is measured as the RSS growth over the build and one warm-up encode: safetensors
weights are memory-mapped, so their pages count in RSS only once a forward pass touches
them. The wrapper's libraries (its class's ``imports``) are imported first, so the first
model of a type is not charged for them. An unload drops every reference the cache holds, collects, trims the
heap, and checks that RSS fell and that nothing else still holds the model (the cache
emits what it finds as events).
"""

from __future__ import annotations

import gc
import importlib
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.spec import ModelSpec
from workers.errors import EmbedfleetError, ModelLoadError
from workers.memory.readings import release_until
from workers.models.base import BaseEmbeddingModel, generate_embeddings
from workers.models.registry import resolve_class

log = logging.getLogger(__name__)

#: Encoded once right after a load, so the measured RSS includes the weight pages a
#: forward pass touches (and a broken model fails at load, not on its first chunk).
WARM_UP_TEXT = "embedfleet warm-up"

Factory = Callable[[str, ModelSpec], BaseEmbeddingModel]


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


def import_type(spec: ModelSpec) -> object:
    """Import the wrapper and its libraries before measuring: they are not model RAM."""
    cls = resolve_class(spec.type)
    for module in cls.libraries(spec):
        try:
            importlib.import_module(module)
        except ImportError:  # the load itself will say what is missing
            log.debug("event=type_import_failed type=%s module=%s", spec.type, module)
    return cls


def load_measured(
    name: str, spec: ModelSpec, factory: Factory, rss: Callable[[], float]
) -> tuple[CachedModel, float, float]:
    """Build ``name`` and warm it up; returns (entry leased once, RSS before, RSS after)."""
    before = rss()
    started = time.perf_counter()
    model = factory(name, spec)
    try:
        if not model.remote:  # a remote model has no weights here to touch
            generate_embeddings(model, [WARM_UP_TEXT])
    except Exception as exc:
        model.close()
        if isinstance(exc, EmbedfleetError):
            raise
        raise ModelLoadError(f"model {name!r} loaded but cannot encode: {exc}") from exc
    seconds = time.perf_counter() - started
    after = rss()
    entry = CachedModel(name, spec, model, max(0.0, after - before), seconds, hits=1, leases=1)
    return entry, before, after


def let_go(
    entry: CachedModel, rss: Callable[[], float]
) -> tuple[float, float, tuple[str, ...] | None]:
    """Close ``entry``'s model and give its memory back.

    Returns (RSS before, RSS after, the types still referring to the model or None).
    A retired model is let go as its last lease ends, while the task that held it may
    still have it in a local variable: its RSS falls a moment later, so it is not
    checked here.
    """
    idle = not entry.retired
    before = rss()
    model, entry.model = entry.model, None  # type: ignore[assignment]
    try:
        ref: weakref.ref[BaseEmbeddingModel] | None = weakref.ref(model)
    except TypeError:  # a wrapper with __slots__ and no __weakref__
        ref = None
    model.close()
    del model
    after = release_until(before, entry.ram_measured_gb if idle else 0.0, rss)
    held = ref() if ref is not None else None
    holders = None
    if idle and held is not None:
        holders = tuple(sorted({type(r).__name__ for r in gc.get_referrers(held)}))
    return before, after, holders
