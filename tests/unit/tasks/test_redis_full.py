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
