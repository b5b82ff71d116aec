"""``embedfleet compare A B --input FILE``: how far two models agree on a sample.

Reports, on the same texts: mean and minimum cosine between A's and B's vector of each
text (when both have the same dimension), top-k neighbour overlap (for each text, the
share of its k nearest neighbours under A that are also among its k nearest under B;
dimensions may differ), and texts/s of each model through the fleet.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from producers.client import EmbeddingClient


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest neighbours (cosine) that A and B agree on."""
    n = a.shape[0]
    k = max(1, min(k, n - 1))
    sims_a, sims_b = _unit(a) @ _unit(a).T, _unit(b) @ _unit(b).T
    np.fill_diagonal(sims_a, -np.inf)
    np.fill_diagonal(sims_b, -np.inf)
    top_a = np.argpartition(-sims_a, k - 1, axis=1)[:, :k]
    top_b = np.argpartition(-sims_b, k - 1, axis=1)[:, :k]
    shared = [len(set(top_a[i]) & set(top_b[i])) for i in range(n)]
    return float(np.mean(shared) / k)


def compare(
    client: EmbeddingClient, model_a: str, model_b: str, texts: list[str], k: int = 10
) -> dict[str, Any]:
    """Embed ``texts`` with both models (cache off, so speed is real) and compare."""
    vectors, speed = {}, {}
    for model in (model_a, model_b):
        t0 = time.perf_counter()
        vectors[model] = client.submit(texts, model=model, cache=False).wait(timeout=3600)
        speed[model] = len(texts) / (time.perf_counter() - t0)
    a, b = vectors[model_a], vectors[model_b]
    report: dict[str, Any] = {
        "texts": len(texts),
        "models": [model_a, model_b],
        "dimensions": [a.shape[1], b.shape[1]],
        "texts_per_s": {model_a: round(speed[model_a], 2), model_b: round(speed[model_b], 2)},
        f"top{k}_overlap": round(neighbour_overlap(a, b, k), 4),
        "cosine_mean": None,
        "cosine_min": None,
    }
    if a.shape == b.shape:
        cos = (_unit(a) * _unit(b)).sum(axis=1)
        report["cosine_mean"] = round(float(cos.mean()), 6)
        report["cosine_min"] = round(float(cos.min()), 6)
    return report
