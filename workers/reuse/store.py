"""The fleet-wide embedding cache: vectors already computed, shared through Redis.

Keyed by (model, model version, sha256 of the text), so a new version of a model never
reads the old one's vectors. Values are the raw float32 bytes a worker computed, so a
hit returns bit-identical vectors. Entries expire after ``EMBEDFLEET_EMBED_CACHE_TTL_S``.

Memory cap: the broker's Redis runs ``noeviction``, so the cache bounds itself. Writes
are counted per TTL window; every live entry was written in the current or the previous
window, so when those two counters reach the cap the cache stops writing (reads go on)
until old entries have expired. The cap is ``EMBEDFLEET_EMBED_CACHE_MAX_MB`` when set,
else :data:`MAXMEMORY_SHARE` of the server's ``maxmemory`` (read with ``CONFIG GET``,
or ``INFO memory`` where CONFIG is refused), :data:`DEFAULT_MAX_MB` on a server with no
limit: the queues and results of the jobs need the rest. A write the server refuses
for memory (``OOM``) is logged and skipped; the chunk's vectors are computed anyway.

Cost per chunk, not per text (issue 16): a chunk's keys are hashed in one pass, read
with one ``MGET`` and written with one server-side script (:data:`PUT_SCRIPT`) that gets
the chunk's vectors as one float32 blob, checks the cap and sets every key with its TTL,
so a write is one round trip and one argument per text instead of a ``SET`` command per
text. A server without scripting gets the same writes as one pipeline of ``SET``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from tasks.contract.logs import event_logger

log = event_logger(__name__)

PREFIX = "embedfleet:emb:"
#: Seconds an embedding stays cached.
DEFAULT_TTL_S = 7 * 24 * 3600
#: Megabytes of vectors the cache may hold on a server without ``maxmemory``.
DEFAULT_MAX_MB = 1024
#: Share of the server's ``maxmemory`` the cache may fill when no cap is set.
MAXMEMORY_SHARE = 0.25
#: Seconds between two reads of the server's ``maxmemory`` (when the cap follows it).
CAP_REFRESH_S = 60.0

#: KEYS: the current and previous window counters, then one key per row.
#: ARGV: TTL (s), cap (bytes), bytes per row, the rows' float32 bytes back to back.
#: Returns 1 when written, 0 when the cap stopped the write (nothing written).
PUT_SCRIPT = """
local ttl, cap, size, blob = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local used = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(redis.call('GET', KEYS[2]) or '0')
if used + #blob > cap then return 0 end
for i = 3, #KEYS do
  local at = (i - 3) * size
  redis.call('SET', KEYS[i], string.sub(blob, at + 1, at + size), 'EX', ttl)
end
redis.call('INCRBY', KEYS[1], #blob)
redis.call('EXPIRE', KEYS[1], 2 * ttl)
return 1
"""


def server_maxmemory(client: Any) -> int:
    """The server's ``maxmemory`` in bytes (0: no limit, or it cannot be read)."""
    try:
        value = client.config_get("maxmemory").get("maxmemory")
    except RedisError:  # CONFIG disabled (managed Redis): INFO says it too
        try:
            value = client.info("memory").get("maxmemory")
        except RedisError:
            value = 0
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def default_cap(client: Any) -> int:
    """Bytes the cache may fill when ``EMBEDFLEET_EMBED_CACHE_MAX_MB`` is not set."""
    limit = server_maxmemory(client)
    cap = int(limit * MAXMEMORY_SHARE) if limit else DEFAULT_MAX_MB * 1024 * 1024
    log.info(
        "event=embed_cache_cap max_mb=%.1f server_maxmemory_mb=%.1f", cap / 2**20, limit / 2**20
    )
    return cap


class EmbeddingCache:
    """Get and put embeddings by (model, version, text) in Redis."""

    def __init__(self, client: Any, ttl_s: int | None = None, max_bytes: int | None = None) -> None:
        self.client = client
        self.ttl_s = ttl_s or DEFAULT_TTL_S
        #: True when the cap follows the server's maxmemory (re-read every CAP_REFRESH_S).
        self.follows_server = max_bytes is None
        self.max_bytes = max_bytes if max_bytes is not None else default_cap(client)
        self._cap_read_at = time.monotonic()
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._script: Any = client.register_script(PUT_SCRIPT)
        self._scripting = True

    @staticmethod
    def key(model: str, version: str, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{PREFIX}{model}:{version}:{digest}"

    @staticmethod
    def keys(model: str, version: str, texts: list[str]) -> list[str]:
        """:meth:`key` of every text, in one pass."""
        prefix, sha256 = f"{PREFIX}{model}:{version}:", hashlib.sha256
        return [prefix + sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]

    def lookup(self, model: str, keys: list[str]) -> list[bytes | None]:
        """The cached float32 bytes under each key (one ``MGET``), None where absent."""
        raw: list[bytes | None] = self.client.mget(keys)
        hits = len(keys) - raw.count(None)
        with self._lock:
            self.hits[model] += hits
            self.misses[model] += len(keys) - hits
        return raw

    def get_many(self, model: str, version: str, texts: list[str]) -> list[np.ndarray | None]:
        """Cached vector of each text, or None where it is not cached."""
        raw = self.lookup(model, self.keys(model, version, texts))
        return [None if value is None else np.frombuffer(value, dtype="<f4") for value in raw]

    def put_many(self, model: str, version: str, texts: list[str], vectors: np.ndarray) -> bool:
        """Store vectors of ``texts``; False when the memory cap stopped the write."""
        return self.store(model, self.keys(model, version, texts), vectors)

    def store(self, model: str, keys: list[str], vectors: np.ndarray) -> bool:
        """Store the rows of ``vectors`` under ``keys``; False when the cap stopped it."""
        data = np.ascontiguousarray(vectors, dtype="<f4")
        if data.ndim != 2 or data.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys for vectors of shape {data.shape}")
        if not keys:
            return True
        if self.follows_server and time.monotonic() - self._cap_read_at > CAP_REFRESH_S:
            self._cap_read_at = time.monotonic()  # an operator may have changed maxmemory
            self.max_bytes = default_cap(self.client)
        window = int(time.time() // self.ttl_s)
        counters = [f"{PREFIX}bytes:{window}", f"{PREFIX}bytes:{window - 1}"]
        written = True
        if self._scripting:
            try:
                args = [self.ttl_s, self.max_bytes, data.shape[1] * 4, data.tobytes()]
                written = bool(self._script(keys=counters + keys, args=args))
            except OutOfMemoryError:
                raise  # the server is full: not a reason to stop using the script
            except ResponseError as exc:  # scripting disabled on this server
                log.warning("event=embed_cache_no_scripting error=%r", str(exc))
                self._scripting = False
        if not self._scripting:
            written = self._store_pipelined(counters, keys, data)
        if not written:
            log.warning(
                "event=embed_cache_full model=%s max_mb=%.1f", model, self.max_bytes / 2**20
            )
        return written

    def _store_pipelined(self, counters: list[str], keys: list[str], data: np.ndarray) -> bool:
        used = sum(int(v or 0) for v in self.client.mget(counters))
        if used + data.nbytes > self.max_bytes:
            return False
        pipe = self.client.pipeline(transaction=False)
        for key, row in zip(keys, data, strict=True):
            pipe.set(key, row.tobytes(), ex=self.ttl_s)
        pipe.incrby(counters[0], data.nbytes)
        pipe.expire(counters[0], 2 * self.ttl_s)
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


def reuse_key(version: str, prompt: str = "", window: str = "") -> str:
    """The version part of the cache keys of vectors computed with ``prompt`` put before
    each text (and, for long texts, under windowing ``window``): a prompt changes the
    vector, so it keys the entry; dimensions and quantization are applied after the
    cache and do not."""
    if prompt:
        version += "+p" + hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    if window:
        version += "+w" + window
    return version


def embed_with_cache(
    cache: EmbeddingCache,
    model: str,
    version: str,
    texts: list[str],
    encode: Any,
) -> np.ndarray:
    """Vectors of ``texts``: cached ones from Redis, the misses encoded with ``encode``.

    One ``MGET`` for the chunk, the misses encoded in one call and written in one
    round trip; the hits are joined into the (n, dim) matrix with two copies, no
    array per text. A cached value of the wrong size (another dimension) is a miss.
    """
    keys = cache.keys(model, version, texts)
    try:
        raw = cache.lookup(model, keys)
    except RedisError as exc:  # the cache is an optimisation: compute instead
        log.warning("event=embed_cache_unavailable op=get model=%s error=%r", model, str(exc))
        raw = [None] * len(texts)
    sizes = {len(v) for v in raw if v is not None}
    if len(sizes) > 1 or 0 in sizes or any(s % 4 for s in sizes):
        raw = [None] * len(texts)  # unreadable entries: recompute the chunk
    missing = [i for i, value in enumerate(raw) if value is None]
    if not missing:
        return np.frombuffer(b"".join(raw), dtype="<f4").reshape(len(texts), -1).copy()  # type: ignore[arg-type]
    fresh = np.ascontiguousarray(encode([texts[i] for i in missing]), dtype=np.float32)
    try:
        cache.store(model, [keys[i] for i in missing], fresh)
    except RedisError as exc:
        log.warning("event=embed_cache_unavailable op=put model=%s error=%r", model, str(exc))
    if len(missing) == len(texts):
        return fresh
    if sizes and sizes != {fresh.shape[1] * 4}:  # cached under another dimension
        return np.ascontiguousarray(encode(texts), dtype=np.float32)
    out = np.empty((len(texts), fresh.shape[1]), dtype=np.float32)
    out[missing] = fresh
    hit = np.ones(len(texts), dtype=bool)
    hit[missing] = False
    out[hit] = np.frombuffer(b"".join(v for v in raw if v is not None), dtype="<f4").reshape(
        -1, fresh.shape[1]
    )
    return out
