"""Job records in Redis: what lets anyone holding a job id follow and fetch it.

Keys (all expire after ``ttl_s`` seconds: ``EMBEDFLEET_RESULT_TTL_S`` of the producer
that created the job, kept in its record as ``ttl_s``; a worker writes what it writes for
the job with that TTL, :func:`ttl_of`, so a job's keys expire together whatever the
worker's own setting):

- ``embedfleet:job:<id>``         hash: model, version, n, total, created, order, bounds,
                                   ttl_s, cancelled
- ``embedfleet:job:<id>:done``    set of finished chunk indices (a set, so a chunk that
                                   runs twice after a redelivery counts once)
- ``embedfleet:job:<id>:failed``  hash chunk index -> error message
- ``embedfleet:jobs``             sorted set of job ids by creation time

Chunk results themselves live in the Celery result backend under the task id
``<job id>.<chunk index>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import redis

from tasks.jobs import redis_full

PREFIX = "embedfleet:job:"
JOBS_KEY = "embedfleet:jobs"
#: Recent jobs kept in the ``embedfleet jobs`` index.
JOBS_INDEX_SIZE = 1000


def chunk_task_id(job_id: str, index: int) -> str:
    """Task id of chunk ``index`` of a job (deterministic, so a job can be found again)."""
    return f"{job_id}.{index}"


@dataclass(frozen=True)
class JobRecord:
    """What was recorded of a job at submit time."""

    id: str
    model: str
    version: str
    n: int
    total: int
    created: float
    order: np.ndarray  # order[k] = input row of the k-th text in chunk order
    bounds: np.ndarray  # chunk i covers order[bounds[i]:bounds[i+1]]
    cancelled: bool = False
    started: bool = False
    alias: str = ""  # the A/B alias the job was submitted to, if any

    def chunk_rows(self, index: int) -> np.ndarray:
        """Input rows that chunk ``index`` holds, in the order of its results."""
        return self.order[self.bounds[index] : self.bounds[index + 1]]


def create(
    client: redis.Redis,
    job_id: str,
    model: str,
    version: str,
    order: np.ndarray,
    bounds: np.ndarray,
    alias: str = "",
    *,
    ttl_s: int,
) -> JobRecord:
    """Write a new job record (before its chunks are queued), expiring in ``ttl_s``."""
    created = time.time()
    record = JobRecord(
        id=job_id,
        model=model,
        version=version,
        n=int(order.size),
        total=int(bounds.size - 1),
        created=created,
        order=order.astype("<i4"),
        bounds=bounds.astype("<i4"),
        alias=alias,
    )
    key = PREFIX + job_id
    pipe = client.pipeline()
    pipe.hset(
        key,
        mapping={
            "model": model,
            "version": version,
            "n": record.n,
            "total": record.total,
            "created": repr(created),
            "order": record.order.tobytes(),
            "bounds": record.bounds.tobytes(),
            "alias": alias,
            "ttl_s": int(ttl_s),
        },
    )
    pipe.expire(key, ttl_s)
    pipe.zadd(JOBS_KEY, {job_id: created})
    pipe.zremrangebyrank(JOBS_KEY, 0, -JOBS_INDEX_SIZE - 1)
    pipe.execute()
    return record


def ttl_of(client: redis.Redis, job_id: str, default: int) -> int:
    """Seconds the keys of job ``job_id`` last: the TTL its producer recorded, else
    ``default`` (the caller's own, for a record from before ``ttl_s`` was kept, or one
    that is gone)."""
    raw = client.hget(PREFIX + job_id, "ttl_s")
    try:
        return int(raw) if raw is not None and int(raw) > 0 else int(default)  # type: ignore[arg-type]
    except ValueError:
        return int(default)


def load(client: redis.Redis, job_id: str) -> JobRecord | None:
    """Read a job record, or None when there is none (unknown or expired)."""
    raw: dict[bytes, bytes] = client.hgetall(PREFIX + job_id)  # type: ignore[assignment]
    if b"model" not in raw:
        return None
    return JobRecord(
        id=job_id,
        model=raw[b"model"].decode(),
        version=raw.get(b"version", b"").decode(),
        n=int(raw[b"n"]),
        total=int(raw[b"total"]),
        created=float(raw[b"created"]),
        order=np.frombuffer(raw[b"order"], dtype="<i4"),
        bounds=np.frombuffer(raw[b"bounds"], dtype="<i4"),
        cancelled=raw.get(b"cancelled") == b"1",
        started=b"started" in raw,
        alias=raw.get(b"alias", b"").decode(),
    )


def progress(client: redis.Redis, job_id: str) -> tuple[set[int], dict[int, str]]:
    """Return (indices of finished chunks, {failed chunk index: error})."""
    # Not MULTI: a Redis out of memory refuses every command queued in a transaction,
    # reads too, and `status` must say what happened then.
    pipe = client.pipeline(transaction=False)
    pipe.smembers(PREFIX + job_id + ":done")
    pipe.hgetall(PREFIX + job_id + ":failed")
    done_raw, failed_raw = pipe.execute()
    done = {int(x) for x in done_raw}
    failed = {int(k): v.decode("utf-8", "replace") for k, v in failed_raw.items()}
    return done, {k: v for k, v in failed.items() if k not in done}


_MARK_DONE = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local total = redis.call('HGET', KEYS[3], 'total')
if total and redis.call('SCARD', KEYS[1]) >= tonumber(total) then
  local now = redis.call('TIME')
  redis.call('HSETNX', KEYS[3], 'finished', now[1] .. '.' .. string.format('%06d', now[2]))
end
return 1
"""


def mark_done(client: redis.Redis, job_id: str, index: int, *, ttl_s: int) -> None:
    """Record chunk ``index`` as finished (idempotent; the ``:done`` set expires in
    ``ttl_s``); the last one stamps the job's ``finished`` time (the server's clock, once)."""
    keys = [PREFIX + job_id + ":done", PREFIX + job_id + ":failed", PREFIX + job_id]
    client.eval(_MARK_DONE, 3, *keys, index, ttl_s)


def times(client: redis.Redis, job_id: str) -> tuple[float | None, float | None]:
    """``(started, finished)`` of a list job (epoch seconds), None where not yet."""
    raw = client.hmget(PREFIX + job_id, ["started", "finished"])
    return tuple(float(x) if x is not None else None for x in raw)  # type: ignore[return-value]


def is_done(client: redis.Redis, job_id: str, index: int) -> bool:
    """Whether chunk ``index`` of the job was recorded as finished."""
    return bool(client.sismember(PREFIX + job_id + ":done", index))


def mark_failed(
    client: redis.Redis,
    job_id: str,
    index: int,
    error: str,
    keep_existing: bool = False,
    *,
    ttl_s: int,
) -> None:
    """Record why chunk ``index`` failed, even on a Redis out of memory (a failure is
    never lost: ``tasks.jobs.redis_full``); ``keep_existing``: not over another reason.
    The ``:failed`` hash expires in ``ttl_s``. Nothing is written when the job is gone
    (deleted or expired)."""
    redis_full.mark_failed(
        client,
        PREFIX + job_id + ":failed",
        [index],
        error,
        ttl_s,
        keep_existing,
        job_key=PREFIX + job_id,
    )


def mark_started(client: redis.Redis, job_id: str) -> None:
    """Note that a worker began on the job (PENDING -> RUNNING)."""
    if client.exists(PREFIX + job_id):
        client.hsetnx(PREFIX + job_id, "started", repr(time.time()))


def mark_cancelled(client: redis.Redis, job_id: str) -> None:
    """Flag a job as cancelled; workers skip its chunks that have not started."""
    client.hset(PREFIX + job_id, "cancelled", 1)


def is_cancelled(client: redis.Redis, job_id: str) -> bool:
    """True when the job was cancelled."""
    return client.hget(PREFIX + job_id, "cancelled") == b"1"


def skipped_as_cancelled(failure: str) -> bool:
    """True when a chunk's recorded failure is only that its job was cancelled before it
    started (``JobCancelled: ...``, as a worker records it): it never ran."""
    return failure.startswith("JobCancelled:")


def recent(client: redis.Redis, limit: int = 20) -> list[str]:
    """Ids of the most recent jobs, newest first."""
    return [x.decode() for x in client.zrevrange(JOBS_KEY, 0, limit - 1)]


def state_of(total: int, done: int, failed: int, cancelled: bool, started: bool) -> str:
    """The job state of the contract: PENDING|RUNNING|SUCCESS|FAILURE|CANCELLED."""
    if done == total:
        return "SUCCESS"
    if cancelled:
        return "CANCELLED"
    if done + failed == total:
        return "FAILURE"
    return "RUNNING" if (done or failed or started) else "PENDING"
