"""The quality gate and the speed measurement of an optimized model against its source.

Quality, on probe texts:

- cosine: between the source's and the candidate's vector of each probe text;
- retrieval: each probe text of two sentences or more is split into a query (its first
  sentence) and a document (the rest); every query searches all documents. The score
  is the mean reciprocal rank of the query's own document (MRR), computed under the
  source and under the candidate; the gate bounds the drop. Recall@10 and the top-10
  neighbour overlap between the two models are reported beside it.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workers.errors import ConfigError, QualityGateError

#: Retrieval pairs the probe texts must yield for the check to mean something.
MIN_PAIRS = 16
#: Neighbours compared in recall@k and the neighbour overlap.
K = 10
_SENTENCE_END = re.compile(r"[.!?]\s+")


@dataclass(frozen=True)
class Quality:
    probes: int
    pairs: int
    cosine_mean: float
    cosine_min: float
    mrr_source: float
    mrr_candidate: float
    recall_at_10_source: float
    recall_at_10_candidate: float
    neighbour_overlap_at_10: float

    @property
    def retrieval_drop(self) -> float:
        return self.mrr_source - self.mrr_candidate

    def as_dict(self) -> dict[str, Any]:
        row = {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}
        row["retrieval_drop"] = round(self.retrieval_drop, 6)
        return row


def retrieval_pairs(texts: list[str]) -> tuple[list[str], list[str]]:
    """(queries, documents): first sentence and the rest of each text that has both."""
    queries, docs = [], []
    for text in texts:
        match = _SENTENCE_END.search(text)
        if not match:
            continue
        query, doc = text[: match.start() + 1].strip(), text[match.end() :].strip()
        if len(query) >= 10 and len(doc) >= 20:
            queries.append(query)
            docs.append(doc)
    return queries, docs


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def ranks(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """0-based rank of document i for query i among all documents (ties count against)."""
    sims = _unit(queries) @ _unit(docs).T
    own = sims[np.arange(len(sims)), np.arange(len(sims))][:, None]
    return (sims > own).sum(axis=1) + (sims == own).sum(axis=1) - 1


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = K) -> float:
    """Mean share of each row's k nearest neighbours (cosine) that A and B agree on."""
    k = max(1, min(k, a.shape[0] - 1))
    sims_a, sims_b = _unit(a) @ _unit(a).T, _unit(b) @ _unit(b).T
    np.fill_diagonal(sims_a, -np.inf)
    np.fill_diagonal(sims_b, -np.inf)
    top_a = np.argpartition(-sims_a, k - 1, axis=1)[:, :k]
    top_b = np.argpartition(-sims_b, k - 1, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) for x, y in zip(top_a, top_b, strict=True)]) / k)


def measure_quality(source: Any, candidate: Any, texts: list[str]) -> Quality:
    """Compare ``candidate`` to ``source`` (both ``BaseEmbeddingModel``) on ``texts``."""
    from workers.models.base import generate_embeddings

    queries, docs = retrieval_pairs(texts)
    if len(queries) < MIN_PAIRS:
        raise ConfigError(
            f"the probe texts give {len(queries)} query/document pairs (texts of two sentences "
            f"or more); the retrieval check needs {MIN_PAIRS}: pass more or longer --probe texts"
        )
    out: dict[str, dict[str, np.ndarray]] = {}
    for side, model in (("source", source), ("candidate", candidate)):
        out[side] = {
            part: generate_embeddings(model, items)
            for part, items in (("texts", texts), ("queries", queries), ("docs", docs))
        }
    cos = (_unit(out["source"]["texts"]) * _unit(out["candidate"]["texts"])).sum(axis=1)
    r_src = ranks(out["source"]["queries"], out["source"]["docs"])
    r_cand = ranks(out["candidate"]["queries"], out["candidate"]["docs"])
    return Quality(
        probes=len(texts),
        pairs=len(queries),
        cosine_mean=float(cos.mean()),
        cosine_min=float(cos.min()),
        mrr_source=float((1.0 / (r_src + 1)).mean()),
        mrr_candidate=float((1.0 / (r_cand + 1)).mean()),
        recall_at_10_source=float((r_src < K).mean()),
        recall_at_10_candidate=float((r_cand < K).mean()),
        neighbour_overlap_at_10=neighbour_overlap(
            out["source"]["texts"], out["candidate"]["texts"]
        ),
    )


def check_gate(model: str, quality: Quality, min_cosine: float, max_drop: float) -> None:
    """Raise :class:`QualityGateError` naming every threshold ``quality`` misses."""
    misses = []
    if not quality.cosine_mean >= min_cosine:
        misses.append(f"mean cosine {quality.cosine_mean:.4f} < {min_cosine}")
    if not quality.retrieval_drop <= max_drop:
        misses.append(
            f"retrieval MRR dropped {quality.retrieval_drop:.4f} > {max_drop} "
            f"({quality.mrr_source:.4f} -> {quality.mrr_candidate:.4f})"
        )
    if misses:
        raise QualityGateError(
            f"{model}: below the quality gate on {quality.probes} probe texts: "
            f"{'; '.join(misses)}; not registered"
        )


def measure_speed(
    models: dict[str, Any], chunks: list[list[str]], rounds: int = 2
) -> dict[str, float]:
    """texts/s of each model encoding ``chunks`` one after another (the fleet's unit of
    work); rounds alternate the models and the best round counts, against noise."""
    from workers.models.base import generate_embeddings

    n = sum(len(c) for c in chunks)
    best = dict.fromkeys(models, float("inf"))
    for model in models.values():
        generate_embeddings(model, chunks[0][:4])  # warm
    for r in range(rounds):
        for name in list(models)[:: 1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            for chunk in chunks:
                generate_embeddings(models[name], chunk)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: n / seconds for name, seconds in best.items()}
