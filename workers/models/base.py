"""The interface every model type implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tasks.spec import ModelSpec
    from workers.models.fidelity import PrecisionRecord


class BaseEmbeddingModel(ABC):
    """A loaded embedding model. Construction loads it; :meth:`close` lets it go.

    Subclasses are built with ``cls(name, spec)`` by ``workers.models.registry``.
    ``encode`` may be called from several threads at once.
    """

    #: Encode one text right after loading, so the measured RAM includes weights that
    #: are memory-mapped and only read on first use. Remote models set this False.
    warm_up: bool = True
    #: The precision the model runs in and what the fidelity probe measured
    #: (``workers.models.fidelity``); None for types that have no choice (remote ones).
    precision_record: PrecisionRecord | None = None

    def __init__(self, name: str, spec: ModelSpec) -> None:
        self.name = name
        self.spec = spec

    @abstractmethod
    def encode(self, sentences: list[str]) -> np.ndarray:
        """Convert sentences to embeddings: an (len(sentences), dim) float32 matrix."""

    @property
    def dimension(self) -> int | None:
        """Embedding size, when known without encoding."""
        return self.spec.dimension

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the model holds beyond Python references (sessions, clients)."""


def encode_in_batches(
    sentences: list[str],
    batch_size: int,
    encode_batch: Callable[[list[str]], np.ndarray],
    dim: int | None = None,
) -> np.ndarray:
    """Run ``encode_batch`` over ``sentences`` in slices of ``batch_size``; stack the rows."""
    parts = [
        encode_batch(sentences[i : i + batch_size]) for i in range(0, len(sentences), batch_size)
    ]
    if not parts:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return np.concatenate(parts)


def generate_embeddings(model: BaseEmbeddingModel, sentences: list[str]) -> np.ndarray:
    """Encode ``sentences`` with ``model`` and return a C-contiguous float32 matrix."""
    vectors = np.asarray(model.encode(list(sentences)), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(sentences):
        raise ValueError(
            f"model {model.name!r} returned shape {vectors.shape} for {len(sentences)} texts"
        )
    return np.ascontiguousarray(vectors)
