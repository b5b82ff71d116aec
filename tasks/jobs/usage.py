"""Token usage of a job: tokens the model saw and rows it truncated, per chunk.

``embedfleet:job:<id>:usage`` is a hash chunk index -> ``"<tokens> <truncated rows>"``,
written by the worker once the chunk is encoded. A chunk run twice (a redelivery)
writes the same field again, so the totals never count it twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.jobs import jobstore

#: Write a chunk's usage only while its job exists: a chunk that finishes after
#: ``delete`` must leave nothing behind.
_RECORD = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def key(job_id: str) -> str:
    return jobstore.PREFIX + job_id + ":usage"


def record(
    client: Any, job_id: str, index: int, columns: dict[str, np.ndarray], *, ttl_s: int
) -> None:
    """Note chunk ``index``'s usage from its result ``columns`` (``tokens``, ``truncated``);
    the usage hash expires in ``ttl_s``."""
    if "tokens" not in columns:
        return
    tokens = int(np.asarray(columns["tokens"], dtype=np.int64).sum())
    truncated = int(np.count_nonzero(columns.get("truncated", ())))
    keys = [key(job_id), jobstore.PREFIX + job_id]
    client.eval(_RECORD, 2, *keys, str(index), f"{tokens} {truncated}", ttl_s)


def totals(client: Any, job_id: str) -> dict[str, int]:
    """``{"tokens", "truncated"}`` over the chunks done so far."""
    tokens = truncated = 0
    for value in client.hvals(key(job_id)):
        a, b = value.split()
        tokens, truncated = tokens + int(a), truncated + int(b)
    return {"tokens": tokens, "truncated": truncated}
