"""The seed's entry points to this worker process's model cache.

``load_embedding_model(name)`` hands out the model under a lease: the cache never
evicts or unloads it while the caller holds it. The lease ends at ``close()``, at the
end of a ``with`` block, or when the object is collected. ``free_memory`` unloads idle
models, in policy order, until the budget has the room asked for.

The cache itself is ``workers.memory.model_cache.ModelCache``.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from workers.memory.model_cache import ModelCache
from workers.models.base import BaseEmbeddingModel
from workers.serving.process import get_runtime

__all__ = ["LeasedModel", "free_memory", "load_embedding_model"]


class LeasedModel(BaseEmbeddingModel):
    """A loaded model held by a lease until :meth:`close` (or collection)."""

    def __init__(self, cache: ModelCache, name: str) -> None:
        lease = cache.lease(name)
        model = lease.__enter__()
        super().__init__(name, model.spec)
        self.model = model
        # The finalizer holds the lease, not ``self``: collecting ``self`` releases it.
        self._release = weakref.finalize(self, lease.__exit__, None, None, None)

    def encode(self, sentences: list[str]) -> np.ndarray:
        return self.model.encode(sentences)

    @property
    def dimension(self) -> int | None:
        return self.model.dimension

    @property
    def held(self) -> bool:
        """True until the lease ends."""
        return self._release.alive

    def close(self) -> None:
        """End the lease; the cache may unload the model from now on."""
        self._release()

    def __enter__(self) -> LeasedModel:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def load_embedding_model(name: str) -> LeasedModel:
    """The seed's entry point: model ``name`` from this process's cache, loaded if
    needed (after freeing memory), leased until the caller closes it."""
    return LeasedModel(get_runtime().cache, name)


def free_memory(required_ram_gb: float) -> list[str]:
    """The seed's entry point: unload idle models, highest RAM first (the policy), until
    the budget has ``required_ram_gb`` free. Returns the models unloaded."""
    return get_runtime().cache.free_memory(required_ram_gb)
