"""The fidelity probe: a lower precision is served only if it keeps fp32's vectors.

At load, a torch wrapper encodes the probe texts (``probe_texts.txt`` beside this
module: short and long, several languages, code, numbers) in fp32, lowers the model to
the precision :func:`workers.models.precision.choose_precision` picked, and encodes
them again. If every row keeps cosine >= the bar (:data:`MIN_COSINE`, or
``EMBEDFLEET_PRECISION_MIN_COSINE``) the lower precision is kept and the fp32 weights
are dropped; else the model goes back to its fp32 weights: with ``auto`` it serves fp32
and says why in one log line, with an explicit precision the load fails saying so.

The outcome is a :class:`PrecisionRecord`, part of the model's load record
(``embedfleet models --json``: ``precision``, ``probe_min_cosine``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError
from workers.models.precision import Hardware, choose_precision

log = event_logger(__name__)

#: The bar every probe row must reach: cosine to the fp32 vector.
MIN_COSINE = 0.9999
#: Env var overriding :data:`MIN_COSINE` (a float in (0, 1]), read by ``tasks.contract.settings``.
MIN_COSINE_ENV = "EMBEDFLEET_PRECISION_MIN_COSINE"
PROBE_FILE = Path(__file__).with_name("probe_texts.txt")

#: Encodes texts into an (n, dim) float matrix with the model as it is now.
Encode = Callable[[list[str]], np.ndarray]
#: Lowers the model to a precision in place; returns the function that undoes it.
Lower = Callable[[str], Callable[[], None]]


@dataclass(frozen=True)
class PrecisionRecord:
    """What a model runs in, and what the probe measured (None: no probe ran)."""

    requested: str
    precision: str
    probe_min_cosine: float | None = None


def probe_texts(path: Path = PROBE_FILE) -> list[str]:
    """The probe texts, one a line."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# Process-wide on purpose: the boot sets it once from its settings
# (EMBEDFLEET_PRECISION_MIN_COSINE) and the wrappers that probe are built as
# ``cls(name, spec)`` (the type plugin contract), which has no place for it; a caller
# that has it passes ``bar`` to :func:`settle_precision` instead.
_bar = MIN_COSINE


def set_min_cosine_bar(value: float) -> None:
    """Set this process's bar (worker boot: ``EMBEDFLEET_PRECISION_MIN_COSINE`` through
    the typed settings, which check it is in (0, 1])."""
    global _bar
    _bar = value


def min_cosine_bar() -> float:
    """The bar in force: :data:`MIN_COSINE` unless the worker's settings set another."""
    return _bar


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b`` (float64; NaN stays NaN)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((a * b).sum(axis=1) / norms)


def settle_precision(
    name: str,
    requested: str,
    hw: Hardware,
    encode: Encode,
    lower: Lower,
    bar: float | None = None,
    texts: list[str] | None = None,
) -> PrecisionRecord:
    """Choose, lower and probe; see the module docstring. Raises ModelLoadError when an
    explicit precision fails the probe."""
    chosen = choose_precision(name, requested, hw)
    if chosen == "fp32":
        log.info(
            "event=precision model=%s requested=%s precision=fp32 hardware=%r",
            name,
            requested,
            hw.describe(),
        )
        return PrecisionRecord(requested, "fp32")
    bar = min_cosine_bar() if bar is None else bar
    texts = texts if texts is not None else probe_texts()
    started = time.perf_counter()
    reference = encode(texts)
    restore = lower(chosen)
    try:
        cosines = row_cosines(reference, encode(texts))
    except Exception:
        restore()
        raise
    worst = int(np.nanargmin(cosines)) if not np.isnan(cosines).all() else 0
    low = float(np.nan_to_num(cosines, nan=-1.0).min())
    seconds = time.perf_counter() - started
    if low >= bar:
        log.info(
            "event=precision model=%s requested=%s precision=%s probe_min_cosine=%.6f bar=%s "
            "probe_texts=%d probe_seconds=%.2f hardware=%r",
            name,
            requested,
            chosen,
            low,
            bar,
            len(texts),
            seconds,
            hw.describe(),
        )
        return PrecisionRecord(requested, chosen, low)
    restore()
    why = (
        f"{chosen} failed the fidelity probe: min cosine to fp32 {low:.6f} < {bar} "
        f"(probe text {worst + 1} of {len(texts)})"
    )
    if requested == "auto":
        log.warning(
            "event=precision_fallback model=%s requested=auto precision=fp32 tried=%s "
            "probe_min_cosine=%.6f bar=%s reason=%r",
            name,
            chosen,
            low,
            bar,
            why,
        )
        return PrecisionRecord(requested, "fp32", low)
    raise ModelLoadError(f"model {name!r}: precision {why}; use 'auto' (falls back) or 'fp32'")
