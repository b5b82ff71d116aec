"""Pure functions on embedding matrices, shared by workers, producers and the gateway.

``truncate_dimensions`` is Matryoshka truncation (OpenAI's ``dimensions``,
sentence-transformers' ``truncate_dim``): the first N columns, re-normalized to unit
length when the model normalizes. ``to_base64`` / ``from_base64`` are OpenAI's
``encoding_format: "base64"``: the little-endian float32 bytes of one vector.
"""

from __future__ import annotations

import base64

import numpy as np

#: The float dtype every vector is computed and cached in.
FLOAT_DTYPE = "<f4"


def truncate_dimensions(vectors: np.ndarray, n: int | None, normalize: bool) -> np.ndarray:
    """The first ``n`` dimensions of each row of ``vectors`` (all when ``n`` is None),
    re-normalized to unit length when ``normalize`` (a zero row stays zero).

    Raises ValueError when ``n`` is not in 1..dimension.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {matrix.shape}")
    dim = matrix.shape[1]
    if n is None or n == dim:
        return matrix
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= dim:
        raise ValueError(f"dimensions must be an integer in 1..{dim}, got {n!r}")
    head = np.ascontiguousarray(matrix[:, :n])
    if normalize:
        norms = np.linalg.norm(head, axis=1, keepdims=True)
        head = head / np.where(norms > 0, norms, 1.0).astype(np.float32)
    return head.astype(np.float32, copy=False)


def to_base64(vector: np.ndarray) -> str:
    """OpenAI's ``encoding_format: "base64"`` of one vector: base64 of its
    little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype=FLOAT_DTYPE).tobytes()).decode()


def from_base64(text: str) -> np.ndarray:
    """The float32 vector that :func:`to_base64` encoded."""
    return np.frombuffer(base64.b64decode(text), dtype=FLOAT_DTYPE).copy()


#: Output precisions a job may ask for, and the dtype each is stored in.
QUANTIZE_DTYPES = {"int8": "int8", "uint8": "uint8", "binary": "int8", "ubinary": "uint8"}


def calibration_ranges(calibration: np.ndarray) -> np.ndarray:
    """int8/uint8 ranges: the per-dimension (min, max) of ``calibration`` vectors, a
    (2, dim) float32 array."""
    matrix = np.asarray(calibration, dtype=np.float32)
    return np.vstack((matrix.min(axis=0), matrix.max(axis=0))).astype(np.float32)


def quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """``vectors`` in ``precision``, as sentence-transformers' ``quantize_embeddings``:
    ``binary`` / ``ubinary`` pack the sign bits 8 per byte (int8 shifted by -128 /
    uint8); ``int8`` / ``uint8`` cut each dimension's ``ranges`` (min, max) into 256
    buckets. Raises ValueError for another precision or missing ranges."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if precision == "ubinary":
        return np.packbits(matrix > 0, axis=-1)
    if precision == "binary":
        return (np.packbits(matrix > 0, axis=-1).astype(np.int16) - 128).astype(np.int8)
    if precision not in ("int8", "uint8"):
        raise ValueError(f"quantize must be one of {sorted(QUANTIZE_DTYPES)}, got {precision!r}")
    if ranges is None or np.shape(ranges) != (2, matrix.shape[1]):
        raise ValueError(f"{precision} needs (2, {matrix.shape[1]}) ranges, got {np.shape(ranges)}")
    ranges = np.asarray(ranges, dtype=np.float32)
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((matrix - starts) / steps), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
