"""The embedding cache's chunk-at-a-time path (workers/reuse/store.py) on a real server."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from tests.plugins import hash_vector
from workers.reuse.store import PREFIX, EmbeddingCache, embed_with_cache

pytestmark = pytest.mark.integration


def _encode_counting(calls: list[list[str]]):
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.stack([hash_vector(t) for t in texts])

    return encode


@pytest.fixture()
def rclient(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(f"{PREFIX}*"):
        client.delete(key)
    return client


def test_keys_keep_the_format_entries_were_written_under(rclient):
    # Entries written before the bulk path must still hit after an upgrade.
    digest = hashlib.sha256("héllo".encode()).hexdigest()
    assert EmbeddingCache.keys("m", "v1", ["héllo"]) == [f"{PREFIX}m:v1:{digest}"]
    assert EmbeddingCache.keys("m", "v1", ["a", "b"]) == [
        EmbeddingCache.key("m", "v1", "a"),
        EmbeddingCache.key("m", "v1", "b"),
    ]


def test_partial_hits_keep_order_and_are_bit_identical(rclient):
    cache = EmbeddingCache(rclient, ttl_s=60)
    calls: list[list[str]] = []
    encode = _encode_counting(calls)
    first = embed_with_cache(cache, "m", "v", ["b", "d"], encode)
    # When a chunk mixes cached and new texts (and repeats one)
    texts = ["a", "b", "c", "d", "a"]
    out = embed_with_cache(cache, "m", "v", texts, encode)
    # Then only the new texts are encoded, and rows come back in input order
    assert calls == [["b", "d"], ["a", "c", "a"]]
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, np.stack([hash_vector(t) for t in texts]))
    assert out[1].tobytes() == first[0].tobytes() and out[3].tobytes() == first[1].tobytes()
    # And a chunk of hits only encodes nothing and counts every hit
    again = embed_with_cache(cache, "m", "v", texts, encode)
    assert len(calls) == 2 and again.tobytes() == out.tobytes()
    assert cache.stats()["m"] == {"hits": 7, "misses": 5, "hit_ratio": 7 / 12}


def test_versions_never_share_entries(rclient):
    cache = EmbeddingCache(rclient, ttl_s=60)
    calls: list[list[str]] = []
    embed_with_cache(cache, "m", "v1", ["x"], _encode_counting(calls))
    embed_with_cache(cache, "m", "v2", ["x"], _encode_counting(calls))
    assert calls == [["x"], ["x"]]


def test_entries_carry_the_ttl(rclient):
    cache = EmbeddingCache(rclient, ttl_s=77)
    embed_with_cache(cache, "m", "v", ["t"], _encode_counting([]))
    ttl = rclient.ttl(EmbeddingCache.key("m", "v", "t"))
    assert 0 < ttl <= 77


def test_a_server_without_scripting_gets_pipelined_writes(rclient):
    class NoScripts:
        def __init__(self, inner):
            self.inner = inner

        def register_script(self, _source):
            def refuse(**_):
                raise ResponseError("unknown command 'EVALSHA'")

            return refuse

        def __getattr__(self, name):
            return getattr(self.inner, name)

    cache = EmbeddingCache(NoScripts(rclient), ttl_s=60, max_bytes=3 * 16 * 4)
    vectors = np.stack([hash_vector(t) for t in "ab"])
    assert cache.put_many("m", "v", ["a", "b"], vectors) is True
    assert cache.put_many("m", "v", ["c", "d"], vectors) is False  # the cap still holds
    found = cache.get_many("m", "v", ["a", "b", "c"])
    assert found[0].tobytes() == vectors[0].tobytes() and found[2] is None


def test_an_entry_of_another_size_is_recomputed(rclient):
    cache = EmbeddingCache(rclient, ttl_s=60)
    rclient.set(EmbeddingCache.key("m", "v", "a"), b"\x00" * 12)  # 3 floats, not 16
    calls: list[list[str]] = []
    out = embed_with_cache(cache, "m", "v", ["a", "b"], _encode_counting(calls))
    np.testing.assert_array_equal(out, np.stack([hash_vector("a"), hash_vector("b")]))
    assert calls[-1] == ["a", "b"]  # the whole chunk, once the size is known to differ


def test_redis_unreachable_computes_instead(redis_server):
    # a server that refuses connections, asked once (redis-py's default is 3 retries
    # with up to 10 s of backoff each: the same errors, 16 s later)
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    cache = EmbeddingCache(dead, ttl_s=60)
    out = embed_with_cache(cache, "m", "v", ["a", "b"], _encode_counting([]))
    np.testing.assert_array_equal(out, np.stack([hash_vector("a"), hash_vector("b")]))


def test_the_cap_follows_the_servers_maxmemory(rclient):
    mb = 2**20
    before = rclient.config_get("maxmemory")["maxmemory"]
    try:
        rclient.config_set("maxmemory", 400 * mb)
        assert EmbeddingCache(rclient, ttl_s=60).max_bytes == 100 * mb  # a quarter of it

        class NoConfig:  # a managed Redis refusing CONFIG: INFO memory says it too
            def __init__(self, inner):
                self.inner = inner

            def config_get(self, *_):
                raise ResponseError("unknown command 'CONFIG'")

            def __getattr__(self, name):
                return getattr(self.inner, name)

        assert EmbeddingCache(NoConfig(rclient), ttl_s=60).max_bytes == 100 * mb
        assert EmbeddingCache(rclient, ttl_s=60, max_bytes=5 * mb).max_bytes == 5 * mb
        rclient.config_set("maxmemory", 0)  # no limit: the fixed default
        assert EmbeddingCache(rclient, ttl_s=60).max_bytes == 1024 * mb
    finally:
        rclient.config_set("maxmemory", before)
