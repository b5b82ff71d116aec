"""Loading and letting go of one model, measured: the cache's mechanics, kept apart from
its policy (what to keep) so each reads on its own.

A load is measured two ways (:func:`measure`):

- directly, where the runtime can say what the model holds (the wrapper's
  ``held_bytes``: torch tensors, ONNX initializers, the tokenizer; else the Python
  objects it reaches);
- as the RSS growth over the build and one warm-up encode (safetensors weights are
  memory-mapped, so their pages count in RSS only once a forward pass touches them).

The model is charged the larger of the two, and the method that gave it is kept
(``tensors``, ``initializers``, ``objects`` or ``rss``; ``remote`` for a model with no
local weights, charged nothing beyond its configured ``RAM``). The RSS growth alone is
unreliable: the allocator reuses memory freed by the previous eviction, and other
threads allocate meanwhile, so it reads low or zero from load to load; the direct
figure does not move. The wrapper's libraries (its class's ``imports``) are imported
first, so the first model of a type is not charged for them. An unload drops every
reference the cache holds, collects, trims the heap, and checks that RSS fell and that
nothing else still holds the model (the cache emits what it finds as events).
"""

from __future__ import annotations

import gc
import importlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.contract.logs import event_logger
from tasks.contract.spec import ModelSpec
from workers.errors import EmbedfleetError, ModelLoadError
from workers.memory.readings import release_memory, release_until
from workers.models.base import BaseEmbeddingModel, generate_embeddings
from workers.models.compute_threads import apply_torch_threads
from workers.models.registry import resolve_class

log = event_logger(__name__)

#: Encoded once right after a load, so the measured RSS includes the weight pages a
#: forward pass touches (and a broken model fails at load, not on its first chunk).
WARM_UP_TEXT = "embedfleet warm-up"

Factory = Callable[[str, ModelSpec], BaseEmbeddingModel]
GB = 1024**3


@dataclass(frozen=True)
class Footprint:
    """What a loaded model is charged, and how that was measured (GB)."""

    #: The figure: the larger of ``direct_gb`` and ``rss_gb`` (0.0 for a remote model).
    gb: float
    #: ``tensors`` | ``initializers`` | ``objects`` (the direct figure's main part won),
    #: ``rss`` (the RSS growth won) or ``remote``.
    method: str
    #: What the runtime says the model holds (None for a remote model).
    direct_gb: float | None
    #: RSS growth over the load and warm-up.
    rss_gb: float


def measure(model: BaseEmbeddingModel, rss_growth_gb: float) -> Footprint:
    """Combine the model's own account of what it holds with the RSS growth."""
    rss_growth_gb = max(0.0, rss_growth_gb)
    parts = model.held_bytes()
    if parts is None:
        return Footprint(0.0, "remote", None, rss_growth_gb)
    direct_gb = sum(parts.values()) / GB
    main = max((k for k in parts if k != "tokenizer"), key=parts.__getitem__, default="objects")
    if rss_growth_gb > direct_gb and not _probed_lowering(model, main):
        return Footprint(rss_growth_gb, "rss", direct_gb, rss_growth_gb)
    return Footprint(direct_gb, main, direct_gb, rss_growth_gb)


def _probed_lowering(model: BaseEmbeddingModel, main: str) -> bool:
    """True for a torch model whose load lowered it below fp32 (bf16, fp16).

    Such a load ran the fidelity probe (an fp32 reference pass, then the lowered one)
    and copied the weights it kept: the RSS growth over that load carries those
    transients, which the allocator keeps for the process and reuses at the next load
    (measured on all-MiniLM-L6-v2 in bf16: 0.115-0.181 GB at a process's first load,
    0.071-0.075 at every later one). The tensor count (bf16 linears plus the fp32 rest,
    0.065 GB) is what the model holds, the same at every load: it is charged
    (docs/MEASURED_RAM.md)."""
    record = getattr(model, "precision_record", None)
    return main == "tensors" and record is not None and record.precision != "fp32"


@dataclass
class CachedModel:
    """A loaded model and its bookkeeping."""

    name: str
    spec: ModelSpec
    model: BaseEmbeddingModel
    ram_measured_gb: float
    load_seconds: float
    #: How ``ram_measured_gb`` was measured (:class:`Footprint`); ``remote``: not here.
    ram_method: str = "rss"
    #: The RSS growth over the load (also when the direct figure won).
    ram_rss_gb: float = 0.0
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
    release_memory()  # both readings after a release: freed heap kept from before the
    before = rss()  # load, given back before the second, would shrink the growth
    started = time.perf_counter()
    apply_torch_threads()  # torch imported with the wrapper's libraries computes on the
    model = factory(name, spec)  # boot's threads from the build on (a precision probe)
    apply_torch_threads()  # and so does a torch a plugin's build imported itself
    try:
        if not model.remote:  # a remote model has no weights here to touch
            generate_embeddings(model, [WARM_UP_TEXT])
    except Exception as exc:
        model.close()
        if isinstance(exc, EmbedfleetError):
            raise
        raise ModelLoadError(f"model {name!r} loaded but cannot encode: {exc}") from exc
    seconds = time.perf_counter() - started
    # What the load freed again (the warm-up's buffers, a probe's fp32 pass, heap that
    # threads meeting on a busy machine spread over extra malloc arenas) goes back to
    # the OS before the reading: the growth counts what the model keeps.
    release_memory()
    after = rss()
    try:
        footprint = measure(model, after - before)
    except Exception as exc:  # a wrapper that cannot account for itself: the RSS growth
        log.warning("event=footprint_failed model=%s error=%r", name, str(exc))
        footprint = Footprint(max(0.0, after - before), "rss", None, max(0.0, after - before))
    entry = CachedModel(
        name,
        spec,
        model,
        footprint.gb,
        seconds,
        ram_method=footprint.method,
        ram_rss_gb=footprint.rss_gb,
        hits=1,
        leases=1,
    )
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
    after = release_until(before, entry.ram_rss_gb if idle else 0.0, rss)
    held = ref() if ref is not None else None
    holders = None
    if idle and held is not None:
        holders = tuple(sorted({type(r).__name__ for r in gc.get_referrers(held)}))
    return before, after, holders
