"""Sending a list job's chunks so that no outage leaves an orphan.

The job is recorded (and its id announced) before the first chunk is sent. Sends retry
while Redis is unreachable (``tasks.jobs.redis_retry.REDIS_RETRY_S``); when it stays down, the
chunks not sent are recorded as failed with the reason, so the job is FAILURE (never
PENDING for ever) and ``retry`` sends exactly those. A producer killed mid-submit
leaves a job whose heartbeat stops: after :data:`SUBMIT_GRACE_S` it reads as FAILURE.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import celeryconfig
from producers.embed_options import recorded
from producers.errors import UsageError
from tasks.contract.wire import MAX_CHARS_PER_TEXT
from tasks.jobs import datasets, job_admin, jobstore
from tasks.jobs.redis_retry import REDIS_RETRY_S, retry_while_unreachable
from tasks.routing import EMBED_TASK, queue_for

if TYPE_CHECKING:
    from producers.client import Job

#: Seconds without a submit heartbeat after which an unfinished submit is a failure.
SUBMIT_GRACE_S = datasets.SUBMIT_GRACE_S
#: Seconds a submit keeps retrying its sends while Redis is unreachable.
SUBMIT_RETRY_S = REDIS_RETRY_S
#: Chunks sent between two heartbeats.
BEAT_EVERY = 256


def send_list_chunks(job: Job, indices: list[int], cache: bool = True) -> None:
    texts = job._texts
    if texts is None:
        raise UsageError(f"job {job.id}: the texts are not in this process")
    app, redis = job.client.app, job.client.redis
    key = jobstore.PREFIX + job.id
    queue = queue_for(job.model)
    record = job.record
    position = 0
    embed = retry_while_unreachable(lambda: recorded(redis, job.id)).to_wire()

    def send_rest() -> None:
        nonlocal position
        with app.producer_or_acquire() as producer:
            while position < len(indices):
                index = indices[position]
                rows = record.chunk_rows(index)
                app.send_task(
                    EMBED_TASK,
                    kwargs={
                        "job_id": job.id,
                        "index": index,
                        "model": job.model,
                        "texts": [texts[r] for r in rows],
                        "options": {"version": record.version, "cache": bool(cache), **embed},
                    },
                    task_id=jobstore.chunk_task_id(job.id, index),
                    queue=queue,
                    producer=producer,
                    kwargsrepr=f"{{'job_id': '{job.id}', 'index': {index}, "
                    f"'model': '{job.model}', 'texts': <{len(rows)} texts>}}",
                )
                position += 1
                if position % BEAT_EVERY == 0:
                    redis.hset(key, "beat", repr(time.time()))

    try:
        retry_while_unreachable(lambda: redis.hset(key, "beat", repr(time.time())), SUBMIT_RETRY_S)
        retry_while_unreachable(send_rest, SUBMIT_RETRY_S, what="sending chunks")
        retry_while_unreachable(lambda: redis.hset(key, "submitted", repr(time.time())))
    except Exception as exc:
        unsent = indices[position:]
        reason = f"not sent: Redis unreachable during submit ({type(exc).__name__}: {exc})"

        def record_unsent() -> None:
            pipe = redis.pipeline()
            for index in unsent:
                pipe.hset(key + ":failed", index, reason)
            pipe.expire(key + ":failed", celeryconfig.RESULT_TTL_S)
            pipe.hset(key, "submitted", repr(time.time()))
            pipe.execute()

        try:
            retry_while_unreachable(record_unsent, 5.0)
        except Exception:
            pass  # still down: the missing heartbeat marks the job FAILURE later
        raise UsageError(
            f"job {job.id}: {len(unsent)} of {record.total} chunks could not be sent "
            f"(Redis unreachable); run `embedfleet retry {job.id}` once it is back"
        ) from exc


def submit_stalled(redis: Any, job_id: str, state: str) -> str | None:
    """Why a job whose submit never finished is a failure, or None."""
    if state not in ("PENDING", "RUNNING"):
        return None
    raw = redis.hmget(jobstore.PREFIX + job_id, ["submitted", "beat"])
    if raw[0] is not None or raw[1] is None:  # done, or sent by code that keeps no beat
        return None
    last = float(raw[1])
    if time.time() - last < SUBMIT_GRACE_S:
        return None
    return (
        "the submit stopped before every chunk was sent (producer died or Redis was "
        f"unreachable); run `embedfleet retry {job_id}`"
    )


def retry_list_job(job: Job, texts: Sequence[str] | None = None) -> int:
    """Send again the chunks of a list job that failed or were never sent."""
    redis = job.client.redis
    if jobstore.is_cancelled(redis, job.id):
        raise UsageError(
            f"job {job.id} was cancelled: the workers hold its chunks as revoked, so it "
            f"cannot be resumed; submit it again"
        )
    from tasks.jobs import reclaim  # reads the settings: not at CLI import time

    # Chunks a dead worker holds go back on their queue now (their messages carry the texts).
    given_back = reclaim.reclaim_job(redis, job.client.app.connection_for_write, job.id)
    done, failed = jobstore.progress(redis, job.id)
    todo = {i for i in failed if i >= 0}
    if submit_stalled(redis, job.id, "PENDING"):  # which were sent is unknown: all not done
        todo |= {i for i in range(job.record.total) if i not in done}
    if not todo:
        return given_back
    if texts is not None:
        job._texts = [t[:MAX_CHARS_PER_TEXT] for t in texts]
    if job._texts is None:
        raw = redis.hmget(jobstore.PREFIX + job.id, ["input", "field"])
        if raw[0] is None:
            raise UsageError(
                f"job {job.id}: its texts were given in memory by the process that submitted "
                f"it; retry from that process (Job.retry) or submit again"
            )
        from tasks.io.readers import read_texts

        read = read_texts(raw[0].decode(), raw[1].decode() or None)
        job._texts = [t[:MAX_CHARS_PER_TEXT] for t in read]
    if len(job._texts) != job.record.n:
        raise UsageError(
            f"job {job.id}: the input now holds {len(job._texts)} texts, the job {job.record.n}"
        )
    job_admin.clear_for_retry(redis, job.id, todo)
    redis.hdel(jobstore.PREFIX + job.id, "submitted")
    job.send_chunks(sorted(todo))
    return len(todo) + given_back


def recorded_ids(job: Job) -> list[str | None] | None:
    """The ids of a list job's rows, re-read from the input file the CLI recorded (None
    when the texts came from memory, the file is gone, or it holds no ids)."""
    raw = job.client.redis.hmget(jobstore.PREFIX + job.id, ["input", "field"])
    if raw[0] is None:
        return None
    from tasks.io.readers import read_rows

    try:
        rows = read_rows(raw[0].decode(), raw[1].decode() or None)
    except Exception:  # the file changed or went: write without ids
        return None
    return rows.ids if rows.ids is not None and len(rows.ids) == job.record.n else None
