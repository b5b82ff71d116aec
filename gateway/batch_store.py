"""Batch records: OpenAI's batch object, kept in Redis beside its dataset job.

A batch is ``embedfleet:batch:<id>`` (JSON: the OpenAI object plus the job id and the
request count), indexed by creation time in ``embedfleet:batches``; batches not yet
ended are also in ``embedfleet:batches:open`` so a gateway can look after them. Nothing
of a batch lives in a gateway process: any gateway, started any time, takes it on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import WatchError

PREFIX = "embedfleet:batch:"
INDEX = "embedfleet:batches"
OPEN = "embedfleet:batches:open"
#: Seconds a batch may take (OpenAI's only completion window).
WINDOW_S = 24 * 3600
ENDED = ("completed", "failed", "cancelled", "expired")


def new_object(
    batch_id: str, input_file_id: str, endpoint: str, window: str, metadata: Any
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": endpoint,
        "errors": None,
        "input_file_id": input_file_id,
        "completion_window": window,
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": now + WINDOW_S,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": metadata,
    }


class BatchRecord:
    """One batch: ``obj`` (what the API returns), ``job`` (its dataset job id)."""

    def __init__(self, obj: dict[str, Any], job: str | None = None) -> None:
        self.obj = obj
        self.job = job

    @property
    def id(self) -> str:
        return str(self.obj["id"])

    @property
    def status(self) -> str:
        return str(self.obj["status"])

    def move(self, status: str, at: str | None = None) -> None:
        """Set ``status`` and stamp ``<at>_at`` (default: the status's own stamp)."""
        self.obj["status"] = status
        stamp = f"{at or status}_at"
        if stamp in self.obj and self.obj[stamp] is None:
            self.obj[stamp] = int(time.time())

    def fail(self, code: str, message: str) -> None:
        self.obj["errors"] = {
            "object": "list",
            "data": [{"code": code, "message": message, "param": None, "line": None}],
        }
        self.move("failed")


def save(redis: Any, batch: BatchRecord) -> None:
    pipe = redis.pipeline()
    _write(pipe, batch)
    pipe.execute()


def _write(pipe: Any, batch: BatchRecord) -> None:
    pipe.set(PREFIX + batch.id, json.dumps({"batch": batch.obj, "job": batch.job}))
    pipe.zadd(INDEX, {batch.id: time.time()}, nx=True)  # the first save orders it
    if batch.status in ENDED:
        pipe.srem(OPEN, batch.id)
    else:
        pipe.sadd(OPEN, batch.id)


def update(redis: Any, batch_id: str, change: Callable[[BatchRecord], None]) -> BatchRecord:
    """Apply ``change`` to the batch as Redis holds it now and save it, unless another
    writer saved it in between (then read it again and redo the change): two steps that
    race (a cancel while the job is being queued) both land. Returns the saved record."""
    key = PREFIX + batch_id
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is None:
                    raise KeyError(f"batch {batch_id} is not in Redis")
                stored = json.loads(raw)
                batch = BatchRecord(stored["batch"], stored.get("job"))
                change(batch)
                pipe.multi()
                _write(pipe, batch)
                pipe.execute()
                return batch
            except WatchError:
                continue


def load(redis: Any, batch_id: str) -> BatchRecord | None:
    raw = redis.get(PREFIX + batch_id) if batch_id.startswith("batch_") else None
    if raw is None:
        return None
    stored = json.loads(raw)
    return BatchRecord(stored["batch"], stored.get("job"))


def open_ids(redis: Any) -> list[str]:
    return sorted(i.decode() for i in redis.smembers(OPEN))


def page(redis: Any, after: str | None, limit: int) -> tuple[list[str], bool]:
    """Batch ids newest first, after ``after``; and whether more follow."""
    start = 0
    if after is not None:
        rank = redis.zrevrank(INDEX, after)
        if rank is None:
            return [], False
        start = rank + 1
    ids = [i.decode() for i in redis.zrevrange(INDEX, start, start + limit)]
    return ids[:limit], len(ids) > limit
