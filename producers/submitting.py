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
from typing import Any

from celery import Celery

from producers.embed_options import recorded
from producers.errors import UsageError
from tasks.contract.wire import MAX_CHARS_PER_TEXT
from tasks.jobs import datasets, jobstore, redis_full
from tasks.jobs.redis_retry import REDIS_RETRY_S, retry_while_unreachable
from tasks.routing import EMBED_TASK, SENT_HEADER, queue_for

#: Seconds without a submit heartbeat after which an unfinished submit is a failure.
SUBMIT_GRACE_S = datasets.SUBMIT_GRACE_S
#: Seconds a submit keeps retrying its sends while Redis is unreachable.
SUBMIT_RETRY_S = REDIS_RETRY_S
#: Chunks sent between two heartbeats.
BEAT_EVERY = 256


def send_list_chunks(
    app: Celery,
    redis: Any,
    record: jobstore.JobRecord,
    texts: Sequence[str],
    indices: list[int],
    cache: bool = True,
    *,
    ttl_s: int,
) -> None:
    """Send chunks ``indices`` of the list job ``record`` (its ``texts`` in input order),
    retrying while Redis is unreachable; when it stays down, the chunks not sent are
    recorded as failed with the reason (for ``ttl_s``) and :class:`UsageError` says so."""
    job_id, model = record.id, record.model
    key = jobstore.PREFIX + job_id
    queue = queue_for(model)
    position = 0
    embed = retry_while_unreachable(lambda: recorded(redis, job_id)).to_wire()

    def send_rest() -> None:
        nonlocal position
        with app.producer_or_acquire() as producer:
            while position < len(indices):
                index = indices[position]
                rows = record.chunk_rows(index)
                app.send_task(
                    EMBED_TASK,
                    kwargs={
                        "job_id": job_id,
                        "index": index,
                        "model": model,
                        "texts": [texts[r] for r in rows],
                        "options": {"version": record.version, "cache": bool(cache), **embed},
                    },
                    task_id=jobstore.chunk_task_id(job_id, index),
                    queue=queue,
                    producer=producer,
                    headers={SENT_HEADER: time.time()},  # the gateway's oldest-chunk age
                    kwargsrepr=f"{{'job_id': '{job_id}', 'index': {index}, "
                    f"'model': '{model}', 'texts': <{len(rows)} texts>}}",
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
        full = redis_full.is_redis_full(exc)
        if full:
            reason = "not sent: " + redis_full.reason("sending chunks", job_id)
            why = "Redis is out of memory: used memory above its maxmemory"
            when = "once it has room (free memory or raise maxmemory)"
        else:
            reason = f"not sent: Redis unreachable during submit ({type(exc).__name__}: {exc})"
            why, when = "Redis unreachable", "once it is back"

        def record_unsent() -> None:
            # written even on a full Redis: the chunks not sent are never lost from view
            redis_full.mark_failed(redis, key + ":failed", unsent, reason, ttl_s)
            redis_full.hset(redis, key, "submitted", repr(time.time()))

        try:
            retry_while_unreachable(record_unsent, 5.0)
        except Exception:
            pass  # still down: the missing heartbeat marks the job FAILURE later
        raise UsageError(
            f"job {job_id}: {len(unsent)} of {record.total} chunks could not be sent "
            f"({why}); run `embedfleet retry {job_id}` {when}"
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


def chunks_to_retry(redis: Any, record: jobstore.JobRecord) -> set[int]:
    """The chunks of a list job to send again: those that failed, and (when its submit
    stalled, so which were sent is unknown) every chunk not done."""
    job_id = record.id
    done, failed = jobstore.progress(redis, job_id)
    todo = {i for i in failed if i >= 0}
    if submit_stalled(redis, job_id, "PENDING"):
        todo |= {i for i in range(record.total) if i not in done}
    return todo


def texts_for_retry(
    redis: Any, record: jobstore.JobRecord, given: Sequence[str] | None
) -> list[str]:
    """The texts a retry sends: ``given``, else the input file the CLI recorded; checked
    against the job's count."""
    if given is not None:
        texts = [t[:MAX_CHARS_PER_TEXT] for t in given]
    else:
        raw = redis.hmget(jobstore.PREFIX + record.id, ["input", "field"])
        if raw[0] is None:
            raise UsageError(
                f"job {record.id}: its texts were given in memory by the process that "
                f"submitted it; retry from that process (Job.retry) or submit again"
            )
        from tasks.io.readers import read_texts

        read = read_texts(raw[0].decode(), raw[1].decode() or None)
        texts = [t[:MAX_CHARS_PER_TEXT] for t in read]
    if len(texts) != record.n:
        raise UsageError(
            f"job {record.id}: the input now holds {len(texts)} texts, the job {record.n}"
        )
    return texts


def recorded_ids(redis: Any, record: jobstore.JobRecord) -> list[str | None] | None:
    """The ids of a list job's rows, re-read from the input file the CLI recorded (None
    when the texts came from memory, the file is gone, or it holds no ids)."""
    raw = redis.hmget(jobstore.PREFIX + record.id, ["input", "field"])
    if raw[0] is None:
        return None
    from tasks.io.readers import read_rows

    try:
        rows = read_rows(raw[0].decode(), raw[1].decode() or None)
    except Exception:  # the file changed or went: write without ids
        return None
    return rows.ids if rows.ids is not None and len(rows.ids) == record.n else None
