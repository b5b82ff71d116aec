"""A model plugin that costs microseconds a text, for measuring the fleet's own cost.

384-d vectors from a text's sha256 (the digest's 32 bytes repeated 12 times, scaled to
[0, 1]), computed text by text as a plain Python plugin would: ~23 us a text on the
bench machine, i.e. ~43,000 texts/s in one process, the reference of issue 16. Served by
workers as ``"type": "bench._micromodel:MicroHashModel"`` (the worker's working
directory is the repository root).
"""

from __future__ import annotations

import hashlib

import numpy as np

from workers.models.base import BaseEmbeddingModel

#: Size of the vectors.
DIMENSION = 384


class MicroHashModel(BaseEmbeddingModel):
    """Deterministic 384-d vectors from each text's sha256."""

    warm_up = False

    def encode(self, sentences: list[str]) -> np.ndarray:
        rows = [
            np.tile(np.frombuffer(hashlib.sha256(t.encode("utf-8")).digest(), np.uint8), 12)
            for t in sentences
        ]
        return np.stack(rows).astype(np.float32) / 255.0

    @property
    def dimension(self) -> int:
        return DIMENSION
