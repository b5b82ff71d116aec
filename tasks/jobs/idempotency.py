"""Idempotency keys in Redis: one key -> the one job a submit made under it.

``embedfleet:idem:<key>`` is a string ``<job id> <reserved at> <digest JSON>``, written
with ``SET NX`` by the first submit (before its job is recorded) and expiring with the
job's records (the submitting client's ``EMBEDFLEET_RESULT_TTL_S``). The job's hash names
the key (``idempotency_key``) so that ``delete`` frees it (:func:`free`), only while the key
still names that job. A reservation whose job never appeared (its submit died between
the two writes) is taken over after :data:`RESERVE_GRACE_S`, with a compare-and-set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

PREFIX = "embedfleet:idem:"
#: Field of a job's hash naming its idempotency key.
JOB_FIELD = "idempotency_key"
#: Seconds a reservation whose job record has not appeared is honoured (a submit writes
#: its job record milliseconds after reserving; one that died leaves the key stale).
RESERVE_GRACE_S = 30.0

_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

_FREE = """
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Holder:
    """Who holds a key: the job, when it was reserved, and the digest of its request."""

    job_id: str
    reserved: float
    digest: dict[str, str]
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Holder:
        job_id, reserved, digest = raw.decode().split(" ", 2)
        return cls(job_id, float(reserved), json.loads(digest), raw)


def _value(job_id: str, digest: dict[str, str]) -> str:
    return f"{job_id} {time.time()!r} {json.dumps(digest, sort_keys=True)}"


def reserve(
    client: redis.Redis, key: str, job_id: str, digest: dict[str, str], ttl_s: int
) -> Holder | None:
    """Reserve ``key`` for ``job_id`` atomically; None when this call won, else the
    holder (whatever its request was)."""
    if client.set(PREFIX + key, _value(job_id, digest), nx=True, ex=ttl_s):
        return None
    raw = client.get(PREFIX + key)
    if raw is None:  # freed or expired between the two calls: try once more
        return reserve(client, key, job_id, digest, ttl_s)
    return Holder.parse(raw)  # type: ignore[arg-type]


def take_over(
    client: redis.Redis, key: str, stale: Holder, job_id: str, digest: dict[str, str], ttl_s: int
) -> bool:
    """Replace a stale reservation with ``job_id``'s, only if it is still ``stale``."""
    swapped = client.eval(_SWAP, 1, PREFIX + key, stale.raw, _value(job_id, digest), ttl_s)
    return bool(swapped)


def holder(client: redis.Redis, key: str) -> Holder | None:
    raw = client.get(PREFIX + key)
    return None if raw is None else Holder.parse(raw)  # type: ignore[arg-type]


def free(client: redis.Redis, key: str, job_id: str) -> bool:
    """Drop ``key`` if it names ``job_id`` (a failed submit, or ``delete``)."""
    return bool(client.eval(_FREE, 1, PREFIX + key, job_id))


def attach(client: redis.Redis, job_id: str, key: str, ttl_s: int) -> None:
    """Name the key in the job's hash and let the key live as long as the record."""
    from tasks.jobs import jobstore

    pipe = client.pipeline()
    pipe.hset(jobstore.PREFIX + job_id, JOB_FIELD, key)
    pipe.expire(PREFIX + key, ttl_s)
    pipe.execute()
