"""Model types defined only in the test suite, plugged in by dotted path."""

from __future__ import annotations

import hashlib

import numpy as np

from workers.models.base import BaseEmbeddingModel

#: Texts containing this marker make :class:`HashModel` fail, to test chunk failures.
POISON = "POISON-PILL"


class HashModel(BaseEmbeddingModel):
    """Deterministic 16-d vectors from a text's sha256; refuses poisoned texts."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        for text in sentences:
            if POISON in text:
                raise ValueError(f"cannot embed a text containing {POISON}")
        return np.stack([hash_vector(t) for t in sentences])

    @property
    def dimension(self) -> int:
        return 16


def hash_vector(text: str) -> np.ndarray:
    digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
    return np.frombuffer(digest, dtype=np.uint8).astype(np.float32) / 255.0
