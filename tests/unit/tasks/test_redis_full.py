"""A full Redis: told apart from an unreachable one, and what must not be lost is
written anyway (a real server, its maxmemory lowered for a moment)."""

from __future__ import annotations

import uuid

import pytest
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

from tasks.jobs import jobstore, redis_full

OOM = "command not allowed when used memory > 'maxmemory'."


def test_a_full_redis_is_told_from_an_unreachable_one():
    assert redis_full.is_redis_full(OutOfMemoryError(OOM))
    try:  # kombu wraps it at times, as a connection error
        try:
            raise OutOfMemoryError(OOM)
        except OutOfMemoryError as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as wrapped:
        assert redis_full.is_redis_full(wrapped)
    assert not redis_full.is_redis_full(RedisConnectionError("Connection refused"))
    assert not redis_full.is_redis_full(None)
    text = redis_full.reason("sending chunks", "j1")
    assert text.startswith("RedisMemoryFull: Redis is out of memory")
    assert "maxmemory" in text and "`embedfleet retry j1`" in text


@pytest.fixture
def full(redis_server):
    client = redis_server.client()
    before = client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory", 1)  # every write that may grow memory is refused
    try:
        yield client
    finally:
        client.config_set("maxmemory", before)


def test_a_chunk_failure_and_a_heartbeat_are_written_on_a_full_redis(full):
    job = uuid.uuid4().hex
    with pytest.raises(OutOfMemoryError):
        full.hset(jobstore.PREFIX + job + ":failed", 0, "plain writes are refused")
    redis_full.hset(full, jobstore.PREFIX + job, "total", "4")  # the job's record
    jobstore.mark_failed(full, job, 3, "why 3", ttl_s=600)
    jobstore.mark_failed(full, job, 3, "not over it", keep_existing=True, ttl_s=600)
    redis_full.set_px(full, "embedfleet:alive:test-" + job, "1", 5000)
    _, failed = jobstore.progress(full, job)  # reads work, outside MULTI too
    assert failed == {3: "why 3"}
    assert full.pttl("embedfleet:alive:test-" + job) > 0
    full.delete(jobstore.PREFIX + job + ":failed", "embedfleet:alive:test-" + job)
    full.delete(jobstore.PREFIX + job)


def test_a_field_is_rewritten_only_while_it_is_there_even_on_a_full_redis(full):
    key = "embedfleet:test:hash-" + uuid.uuid4().hex
    redis_full.hset(full, key, "w1", "old")
    # A field that is there is rewritten, though Redis is full
    assert redis_full.hset_if_exists(full, key, "w1", "new") is True
    assert full.hget(key, "w1") == b"new"
    # A field that is gone is not brought back
    full.hdel(key, "w1")
    assert redis_full.hset_if_exists(full, key, "w1", "back") is False
    assert full.hget(key, "w1") is None and not full.exists(key)


def test_a_catalog_heartbeat_never_brings_back_an_entry_forgotten_meanwhile(redis_server):
    from tasks.contract import catalog
    from tasks.contract.spec import parse_model_config

    client = redis_server.client()
    worker = "unit-" + uuid.uuid4().hex
    config = parse_model_config(
        {"m": {"type": "tests.plugins:HashModel", "model_path": "-", "RAM": 0.01}}
    )
    catalog.publish(client, worker, config, ["m"], write=redis_full.hset)

    def forgotten_then_written(c, key, field, value):
        catalog.forget(c, worker)  # the worker's shutdown, between the beat's read and write
        return redis_full.hset_if_exists(c, key, field, value)

    # When a beat reads the entry, the worker's shutdown forgets it, then the beat writes
    assert catalog.heartbeat(client, worker, None, forgotten_then_written) is False
    # Then the entry stays gone
    assert client.hget(catalog.CATALOG_KEY, worker) is None
    # (and a beat with nothing forgotten meanwhile refreshes it, with the default write too)
    catalog.publish(client, worker, config, ["m"])
    assert catalog.heartbeat(client, worker, None, redis_full.hset_if_exists) is True
    assert catalog.heartbeat(client, worker) is True
    catalog.forget(client, worker)
    assert catalog.heartbeat(client, worker) is False


def test_a_catalog_entry_is_published_on_a_full_redis(full):
    from tasks.contract import catalog
    from tasks.contract.spec import parse_model_config

    worker = "unit-" + uuid.uuid4().hex
    config = parse_model_config(
        {"m": {"type": "tests.plugins:HashModel", "model_path": "-", "RAM": 0.01}}
    )
    catalog.publish(full, worker, config, ["m"], write=redis_full.hset)
    assert worker in catalog.live_workers(full, "m")
    full.hdel(catalog.CATALOG_KEY, worker)
