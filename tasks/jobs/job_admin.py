"""Retry and delete bookkeeping of jobs in Redis (dataset and list jobs alike)."""

from __future__ import annotations

import redis

from tasks.jobs import jobstore
from tasks.jobs.datasets import key


def delete(client: redis.Redis, job_id: str, total: int) -> int:
    """Drop every key of a job (record, plan, bits, results, delivery counters);
    returns how many keys went."""
    names = [
        key(job_id, s)
        for s in ("", "plan", "files", "donebits", "sent", "failed", "refused", "done", "parts")
    ]
    names += [f"celery-task-meta-{jobstore.chunk_task_id(job_id, i)}" for i in range(total)]
    names += [
        k.decode() if isinstance(k, bytes) else k
        for k in client.scan_iter(match=f"embedfleet:deliveries:{job_id}.*", count=1000)
    ]
    removed = 0
    for start in range(0, len(names), 1000):
        removed += int(client.delete(*names[start : start + 1000]))  # type: ignore[arg-type]
    client.zrem(jobstore.JOBS_KEY, job_id)
    return removed


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
