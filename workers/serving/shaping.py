"""What a job's options do to vectors after the embedding cache (``tasks.contract.options``).

The cache holds the full float32 vectors of a (model version, text) pair; ``dimensions``
then ``quantize`` are applied to what it returns, so one cached vector serves every size
and precision.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tasks.contract.errors import InvalidRequest
from tasks.contract.options import EmbedOptions
from tasks.contract.vectors import quantize, truncate_dimensions
from workers.models.base import BaseEmbeddingModel


def shape_vectors(
    vectors: np.ndarray,
    options: EmbedOptions,
    model: BaseEmbeddingModel,
    ranges_for: Callable[[int], np.ndarray] | None = None,
) -> np.ndarray:
    """``vectors`` (n, dim float32, as the model computed them) cut to ``dimensions``,
    re-normalized when the model normalizes; :class:`InvalidRequest` when the job asks
    for more dimensions than the model has, or for a size it does not support."""
    out = _cut(vectors, options, model)
    if options.quantize is None:
        return out
    ranges = None
    if options.quantize in ("int8", "uint8"):
        if ranges_for is None:
            raise InvalidRequest(f"quantize={options.quantize} needs calibration ranges here")
        ranges = ranges_for(int(out.shape[1]))
    return quantize(out, options.quantize, ranges)


def _cut(vectors: np.ndarray, options: EmbedOptions, model: BaseEmbeddingModel) -> np.ndarray:
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
