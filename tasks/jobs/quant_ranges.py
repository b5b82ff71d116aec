"""int8/uint8 quantization ranges, fixed per (model, version, dimensions) for the fleet.

The ranges are the per-dimension (min, max) of the model's vectors of a calibration set
that ships with the package (``tasks/contract/calibration_texts.txt``). The first
worker (or ``EmbeddingClient.quantize``) to need them computes them and stores them with
``SET NX`` under ``embedfleet:quant:<model>:<version>:<dims>``; everyone after reads that
copy, so every job and every query on that version quantizes alike, even across
workers whose precision differs (a bf16 worker's vectors differ from an fp32 one's in
the 5th digit).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

PREFIX = "embedfleet:quant:"
#: The calibration texts, one a line.
CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "contract" / "calibration_texts.txt"
#: Seconds the stored ranges live (refreshed on every read); recomputed alike after.
TTL_S = 90 * 24 * 3600


@lru_cache(maxsize=1)
def calibration_texts() -> tuple[str, ...]:
    """The shipped calibration set (300 package descriptions, none in the tests' sets)."""
    return tuple(t for t in CALIBRATION_FILE.read_text(encoding="utf-8").splitlines() if t)


def key(model: str, version: str, dims: int) -> str:
    return f"{PREFIX}{model}:{version}:{dims}"


def load(client: Any, model: str, version: str, dims: int) -> np.ndarray | None:
    """The stored (2, dims) ranges, or None when nobody computed them yet."""
    raw = client.get(key(model, version, dims))
    if raw is None:
        return None
    client.expire(key(model, version, dims), TTL_S)
    return np.asarray(json.loads(raw), dtype=np.float32).reshape(2, dims)


def store(client: Any, model: str, version: str, ranges: np.ndarray) -> np.ndarray:
    """Store ``ranges`` unless someone did first; returns the ranges that are stored."""
    dims = int(ranges.shape[1])
    client.set(key(model, version, dims), json.dumps(ranges.tolist()), nx=True, ex=TTL_S)
    stored = load(client, model, version, dims)
    return stored if stored is not None else ranges


def manifest_entry(client: Any, record: Any, dims: int) -> dict[str, Any]:
    """What a dataset job's manifest says of its int8/uint8 ranges (nothing for others):
    ``{"quantization": {"precision", "ranges": [[min...], [max...]]}}``."""
    precision = (record.spec.get("embed") or {}).get("quantize")
    if precision not in ("int8", "uint8"):
        return {}
    ranges = load(client, record.model, record.version, dims)
    return {
        "quantization": {
            "precision": precision,
            "ranges": None if ranges is None else ranges.tolist(),
        }
    }
