"""Retry and delete bookkeeping of jobs in Redis (dataset and list jobs alike)."""

from __future__ import annotations

import time

import redis

from tasks.jobs import idempotency, jobstore
from tasks.jobs.datasets import key

#: Prefix of the tombstone a deleted job leaves (``status`` says "deleted", not "never
#: submitted"); it lives as long as the job's records would have.
DELETED_PREFIX = "embedfleet:deleted:"


def delete(client: redis.Redis, job_id: str, total: int, *, ttl_s: int) -> int:
    """Drop every key of a job (record, plan, bits, results, delivery counters) and free
    its idempotency key; leaves a small tombstone for ``ttl_s``. Returns how many keys went."""
    held = client.hget(key(job_id), idempotency.JOB_FIELD)
    if held is not None:
        idempotency.free(client, held.decode(), job_id)
    names = [
        key(job_id, s)
        for s in (
            *("", "plan", "files", "donebits", "sent", "failed", "refused", "done"),
            *("redelivered", "usage", "parts"),
        )
    ]
    names += [f"celery-task-meta-{jobstore.chunk_task_id(job_id, i)}" for i in range(total)]
    names += [  # delivery counters, blame and last worker of chunks still running
        k.decode() if isinstance(k, bytes) else k
        for k in client.scan_iter(match=f"embedfleet:*:{job_id}.*", count=1000)
    ]
    removed = 0
    for start in range(0, len(names), 1000):
        removed += int(client.delete(*names[start : start + 1000]))  # type: ignore[arg-type]
    client.zrem(jobstore.JOBS_KEY, job_id)
    client.set(DELETED_PREFIX + job_id, repr(time.time()), ex=ttl_s)
    return removed


def deleted_at(client: redis.Redis, job_id: str) -> float | None:
    """When the job was deleted, or None (never deleted, or long ago)."""
    raw = client.get(DELETED_PREFIX + job_id)
    return None if raw is None else float(raw)  # type: ignore[arg-type]


_UNMARK_DONE = """
if redis.call('SETBIT', KEYS[1], ARGV[1], 0) == 1 then
  redis.call('HINCRBY', KEYS[2], 'done', -1)
  redis.call('HINCRBY', KEYS[2], 'rows_done', -tonumber(ARGV[2]))
  redis.call('HDEL', KEYS[2], 'finished')
end
return 1
"""


def unmark_done(client: redis.Redis, job_id: str, index: int, rows: int) -> None:
    """Count chunk ``index`` undone again (its part went missing)."""
    client.eval(_UNMARK_DONE, 2, key(job_id, "donebits"), key(job_id), index, rows)


def clear_for_retry(client: redis.Redis, job_id: str, indices: list[int]) -> None:
    """Forget the errors and delivery counts of chunks about to be sent again."""
    pipe = client.pipeline()
    if indices:
        pipe.hdel(key(job_id, "failed"), *indices)
    for index in indices:
        pipe.delete(f"embedfleet:deliveries:{jobstore.chunk_task_id(job_id, index)}:0")
    pipe.hdel(key(job_id), "submit_error")
    pipe.execute()
