"""The fleet-wide embedding cache: vectors already computed, shared through Redis.

Keyed by (model, model version, sha256 of the text), so a new version of a model never
reads the old one's vectors. Values are the raw float32 bytes a worker computed, so a
hit returns bit-identical vectors. Entries expire after ``EMBEDFLEET_EMBED_CACHE_TTL_S``.

Memory cap: the broker's Redis runs ``noeviction``, so the cache bounds itself. Writes
are counted per TTL window; every live entry was written in the current or the previous
window, so when those two counters reach ``EMBEDFLEET_EMBED_CACHE_MAX_MB`` the cache
stops writing (reads go on) until old entries have expired.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "embedfleet:emb:"
#: Seconds an embedding stays cached.
DEFAULT_TTL_S = 7 * 24 * 3600
#: Megabytes of vectors the cache may hold.
DEFAULT_MAX_MB = 1024


class EmbeddingCache:
    """Get and put embeddings by (model, version, text) in Redis."""

    def __init__(self, client: Any, ttl_s: int | None = None, max_bytes: int | None = None) -> None:
        self.client = client
        self.ttl_s = ttl_s or DEFAULT_TTL_S
        self.max_bytes = max_bytes if max_bytes is not None else DEFAULT_MAX_MB * 1024 * 1024
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, version: str, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{PREFIX}{model}:{version}:{digest}"

    def get_many(self, model: str, version: str, texts: list[str]) -> list[np.ndarray | None]:
        """Cached vector of each text, or None where it is not cached."""
        raw = self.client.mget([self.key(model, version, t) for t in texts])
        found: list[np.ndarray | None] = [
            None if value is None else np.frombuffer(value, dtype="<f4") for value in raw
        ]
        hits = sum(v is not None for v in found)
        with self._lock:
            self.hits[model] += hits
            self.misses[model] += len(texts) - hits
        return found

    def put_many(self, model: str, version: str, texts: list[str], vectors: np.ndarray) -> bool:
        """Store vectors of ``texts``; False when the memory cap stopped the write."""
        data = np.ascontiguousarray(vectors, dtype="<f4")
        nbytes = data.nbytes
        window = int(time.time() // self.ttl_s)
        current, previous = f"{PREFIX}bytes:{window}", f"{PREFIX}bytes:{window - 1}"
        used = sum(int(v or 0) for v in self.client.mget([current, previous]))
        if used + nbytes > self.max_bytes:
            log.warning(
                "event=embed_cache_full model=%s used_mb=%.1f max_mb=%.1f",
                model,
                used / 2**20,
                self.max_bytes / 2**20,
            )
            return False
        pipe = self.client.pipeline(transaction=False)
        for text, row in zip(texts, data, strict=True):
            pipe.set(self.key(model, version, text), row.tobytes(), ex=self.ttl_s)
        pipe.incrby(current, nbytes)
        pipe.expire(current, 2 * self.ttl_s)
        pipe.execute()
        return True

    def hit_ratio(self, model: str) -> float:
        total = self.hits[model] + self.misses[model]
        return self.hits[model] / total if total else 0.0

    def stats(self) -> dict[str, dict[str, float]]:
        """Per model: hits, misses, hit ratio (for ``embedfleet models`` and metrics)."""
        with self._lock:
            models = set(self.hits) | set(self.misses)
            return {
                m: {"hits": self.hits[m], "misses": self.misses[m], "hit_ratio": self.hit_ratio(m)}
                for m in sorted(models)
            }


def embed_with_cache(
    cache: EmbeddingCache,
    model: str,
    version: str,
    texts: list[str],
    encode: Any,
) -> np.ndarray:
    """Vectors of ``texts``: cached ones from Redis, the misses encoded with ``encode``."""
    try:
        found = cache.get_many(model, version, texts)
    except RedisError as exc:  # the cache is an optimisation: compute instead
        log.warning("event=embed_cache_unavailable op=get model=%s error=%r", model, str(exc))
        found = [None] * len(texts)
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        fresh = encode([texts[i] for i in missing])
        try:
            cache.put_many(model, version, [texts[i] for i in missing], fresh)
        except RedisError as exc:
            log.warning("event=embed_cache_unavailable op=put model=%s error=%r", model, str(exc))
        for row, i in enumerate(missing):
            found[i] = fresh[row]
    return np.ascontiguousarray(np.stack(found), dtype=np.float32)
