"""What a job's options do to vectors after the embedding cache (``tasks.contract.options``).

The cache holds the full float32 vectors of a (model version, text) pair; ``dimensions``
is applied to what it returns, so one cached vector serves every size.
"""

from __future__ import annotations

import numpy as np

from tasks.contract.errors import InvalidRequest
from tasks.contract.options import EmbedOptions
from tasks.contract.vectors import truncate_dimensions
from workers.models.base import BaseEmbeddingModel


def shape_vectors(
    vectors: np.ndarray, options: EmbedOptions, model: BaseEmbeddingModel
) -> np.ndarray:
    """``vectors`` (n, dim float32, as the model computed them) cut to ``dimensions``,
    re-normalized when the model normalizes; :class:`InvalidRequest` when the job asks
    for more dimensions than the model has, or for a size it does not support."""
    n = options.dimensions
    if n is None:
        return vectors
    dim = int(vectors.shape[1])
    if n > dim:
        raise InvalidRequest(
            f"dimensions={n} is larger than model {model.name!r}'s dimension {dim}"
        )
    supported = model.spec.dimensions_supported
    if supported and n not in supported and n != dim:
        raise InvalidRequest(
            f"dimensions={n} is not a size model {model.name!r} supports; "
            f"dimensions_supported: {sorted(supported)}"
        )
    return truncate_dimensions(vectors, n, model.normalizes)
