"""Dataset jobs in Redis: small per-job state, and the window that feeds the queue.

Keys (all expire after ``EMBEDFLEET_RESULT_TTL_S``; ``embedfleet delete`` drops them):

- ``embedfleet:job:<id>``          hash: kind=dataset, model, version, alias, n (rows),
                                    total (chunks), created, started, finished, spec
                                    (JSON: format, fields, output, window), sig (the
                                    job key's signature, ``tasks.contract.signing``), done
                                    and rows_done counters, dimension, submitted, cancelled
- ``embedfleet:job:<id>:plan``     string: 48 bytes per chunk (``tasks.io.scan``), read
                                    by a worker with GETRANGE for its own chunk
- ``embedfleet:job:<id>:files``    hash file index -> JSON {url, size, mtime, etag, ...
                                    (the pin, ``tasks.io.pinning``), columns}
- ``embedfleet:job:<id>:donebits`` bitmap: chunk i's part is written
- ``embedfleet:job:<id>:sent``     bitmap: chunk i's message was sent
- ``embedfleet:job:<id>:failed``   hash chunk index -> error (failed chunks only)
- ``embedfleet:job:<id>:refused``  string: JSON list of OpenAI requests refused at scan
- ``embedfleet:job:<id>:redelivered`` hash chunk index -> deliveries, for chunks
                                    delivered more than once (``tasks.jobs.deliveries``)
- ``embedfleet:job:<id>:parts``    string: 40 bytes per chunk, its part's sha256 and size
                                    (``tasks.jobs.outputs``, for the manifest)

A chunk finishing after the job was deleted writes none of these back: every write a
chunk makes checks, in the same call, that the job hash still exists.

No text and no vector is kept: a 2,000,000-row job of 1,024-row chunks holds ~100 KB.

The window: the producer sends chunks ``0 .. window-1``; a worker that finishes (or
fails) chunk ``i`` sends chunk ``i + window``. So at most ``window`` messages of a job
wait or run at any time, whatever the input's size, and the job needs no producer after
``submit``. The ``sent`` bit keeps a chunk redelivered after a worker died from sending
its successor twice. Dataset chunks travel at the priority the sender's settings give
(``EMBEDFLEET_DATASET_PRIORITY``, kombu's Redis priority lists), behind small jobs' chunks
on the same model queue.

Every write takes its ``ttl_s`` (``EMBEDFLEET_RESULT_TTL_S``) from the caller: the
producer's settings at submit, the worker's in a chunk (``FleetApp.settings``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from celery import Celery

from tasks.contract import signing
from tasks.io.scan import CHUNK_DTYPE, Plan
from tasks.jobs import jobstore
from tasks.routing import DATASET_TASK, ROWS_HEADER, SENT_HEADER, queue_for

#: Chunk messages of one job waiting or running at once.
DEFAULT_WINDOW = 16
#: Seconds after which a job whose submit never finished sending its window is FAILURE.
SUBMIT_GRACE_S = 180.0

_MARK_DONE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local old = redis.call('SETBIT', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
if old == 0 then
  redis.call('HINCRBY', KEYS[2], 'done', 1)
  redis.call('HINCRBY', KEYS[2], 'rows_done', ARGV[2])
end
redis.call('HDEL', KEYS[3], ARGV[1])
return tonumber(redis.call('HGET', KEYS[2], 'done'))
"""


#: Set a field of a job's hash only while the job exists: a chunk that finishes after
#: ``delete`` must not bring the hash back (with no expiry).
_HSETNX_IF_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
"""
#: Mark a chunk sent only while the job exists (the bitmap expires with the job).
_MARK_SENT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SETBIT', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def key(job_id: str, suffix: str = "") -> str:
    return jobstore.PREFIX + job_id + (":" + suffix if suffix else "")


@dataclass(frozen=True)
class DatasetRecord:
    """What a dataset job is, as recorded at submit time plus its counters."""

    id: str
    model: str
    version: str
    alias: str
    n: int
    total: int
    created: float
    spec: dict[str, Any]
    done: int = 0
    rows_done: int = 0
    started: float | None = None
    finished: float | None = None
    cancelled: bool = False
    submitted: bool = False
    submit_error: str = ""
    dimension: int = 0
    #: The gateway batch the job serves ("" for none): its claim outlives a cancel.
    batch: str = ""
    #: The spec as stored (the bytes the job key signed) and the signature.
    spec_json: str = ""
    signature: str = ""

    @property
    def output(self) -> str:
        return str(self.spec["output"])

    @property
    def window(self) -> int:
        return int(self.spec.get("window", DEFAULT_WINDOW))


def is_dataset(client: redis.Redis, job_id: str) -> bool:
    return client.hget(key(job_id), "kind") == b"dataset"


def create(
    client: redis.Redis,
    job_id: str,
    model: str,
    version: str,
    alias: str,
    plan: Plan,
    spec: dict[str, Any],
    job_key: bytes,
    *,
    ttl_s: int,
) -> DatasetRecord:
    """Write a dataset job's record, plan and files (before any chunk is sent), signed
    with ``job_key`` (``tasks.contract.signing``): workers refuse it otherwise. They
    expire in ``ttl_s``."""
    created = time.time()
    total = int(plan.chunks.size)
    fields = signing.job_fields(job_id, model, version, alias, plan.rows, total, json.dumps(spec))
    plan_bytes = plan.chunks.astype(CHUNK_DTYPE).tobytes()
    files = {i: json.dumps(f) for i, f in enumerate(plan.files)}
    signed = signing.message(fields, signing.digest(plan_bytes), signing.files_digest(files))
    signature = signing.sign(job_key, signed)
    pipe = client.pipeline()
    pipe.hset(
        key(job_id),
        mapping={
            "kind": "dataset",
            **{name: value for name, value in fields.items() if name != "job"},
            "created": repr(created),
            "sig": signature,
            "done": 0,
            "rows_done": 0,
            "ttl_s": int(ttl_s),  # what the workers write for the job lasts as long
        },
    )
    pipe.set(key(job_id, "plan"), plan_bytes)
    pipe.hset(key(job_id, "files"), mapping=files)  # type: ignore[arg-type]
    if plan.errors:
        pipe.set(key(job_id, "refused"), json.dumps(plan.errors))
    for suffix in ("", "plan", "files", "refused"):
        pipe.expire(key(job_id, suffix), ttl_s)
    pipe.zadd(jobstore.JOBS_KEY, {job_id: created})
    pipe.zremrangebyrank(jobstore.JOBS_KEY, 0, -jobstore.JOBS_INDEX_SIZE - 1)
    pipe.execute()
    return DatasetRecord(
        job_id,
        model,
        version,
        alias,
        plan.rows,
        int(plan.chunks.size),
        created,
        spec,
        spec_json=fields["spec"],
        signature=signature,
    )


def load(client: redis.Redis, job_id: str) -> DatasetRecord | None:
    raw: dict[bytes, bytes] = client.hgetall(key(job_id))  # type: ignore[assignment]
    if raw.get(b"kind") != b"dataset":
        return None

    def num(name: bytes) -> float | None:
        return float(raw[name]) if name in raw else None

    return DatasetRecord(
        id=job_id,
        model=raw[b"model"].decode(),
        version=raw.get(b"version", b"").decode(),
        alias=raw.get(b"alias", b"").decode(),
        n=int(raw[b"n"]),
        total=int(raw[b"total"]),
        created=float(raw[b"created"]),
        spec=json.loads(raw[b"spec"]),
        done=int(raw.get(b"done", 0)),
        rows_done=int(raw.get(b"rows_done", 0)),
        started=num(b"started"),
        finished=num(b"finished"),
        cancelled=raw.get(b"cancelled") == b"1",
        submitted=b"submitted" in raw,
        submit_error=raw.get(b"submit_error", b"").decode(),
        dimension=int(raw.get(b"dimension", 0)),
        batch=raw.get(b"batch", b"").decode(),
        spec_json=raw[b"spec"].decode(),
        signature=raw.get(b"sig", b"").decode(),
    )


def chunk(client: redis.Redis, job_id: str, index: int) -> np.void | None:
    """Chunk ``index`` of the plan, or None when the job has no such chunk."""
    size = CHUNK_DTYPE.itemsize
    raw = client.getrange(key(job_id, "plan"), index * size, (index + 1) * size - 1)
    if len(raw) != size:
        return None
    return np.frombuffer(raw, dtype=CHUNK_DTYPE)[0]


def chunks(client: redis.Redis, job_id: str) -> np.ndarray:
    """The whole plan (producers: status, retry, result)."""
    return np.frombuffer(client.get(key(job_id, "plan")) or b"", dtype=CHUNK_DTYPE)


def file(client: redis.Redis, job_id: str, index: int) -> dict[str, Any]:
    raw = client.hget(key(job_id, "files"), index)
    if raw is None:
        raise KeyError(f"job {job_id} has no file {index}")
    return dict(json.loads(raw))


def refused(client: redis.Redis, job_id: str) -> list[dict[str, Any]]:
    raw = client.get(key(job_id, "refused"))
    return list(json.loads(raw)) if raw else []


def bits(client: redis.Redis, job_id: str, name: str, total: int) -> np.ndarray:
    """Bitmap ``name`` (``donebits`` or ``sent``) as a bool array of ``total`` chunks."""
    raw = client.get(key(job_id, name)) or b""
    flags = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:total].astype(bool)
    return np.concatenate([flags, np.zeros(total - flags.size, dtype=bool)])


def is_done(client: redis.Redis, job_id: str, index: int) -> bool:
    return bool(client.getbit(key(job_id, "donebits"), index))


def mark_done(client: redis.Redis, job_id: str, index: int, rows: int, *, ttl_s: int) -> int:
    """Record chunk ``index`` as written (once, however often it ran); returns the number
    of chunks done, or -1 when the job is gone (deleted or expired)."""
    keys = [key(job_id, "donebits"), key(job_id), key(job_id, "failed")]
    done = client.eval(_MARK_DONE, 3, *keys, index, rows, ttl_s)
    return int(done)  # type: ignore[arg-type]


def failed_count(client: redis.Redis, job_id: str) -> int:
    """Chunks of the job that failed (and were not done since)."""
    return int(client.hlen(key(job_id, "failed")))


def _set_once(client: redis.Redis, job_id: str, name: str, value: object) -> None:
    client.eval(_HSETNX_IF_JOB, 1, key(job_id), name, str(value))


def mark_started(client: redis.Redis, job_id: str) -> None:
    _set_once(client, job_id, "started", repr(time.time()))


def set_dimension(client: redis.Redis, job_id: str, dimension: int) -> None:
    _set_once(client, job_id, "dimension", dimension)


def mark_batch(client: redis.Redis, job_id: str, batch_id: str) -> None:
    """The job serves gateway batch ``batch_id``: a cancel keeps its claim on the batch's
    parts folder, which the gateway releases once the batch's files are made."""
    _set_once(client, job_id, "batch", batch_id)


def mark_finished(client: redis.Redis, job_id: str) -> None:
    _set_once(client, job_id, "finished", repr(time.time()))


def mark_submitted(client: redis.Redis, job_id: str, error: str = "") -> None:
    """The producer sent its window (or gave up with ``error``)."""
    if error:
        client.hset(key(job_id), "submit_error", error)
    else:
        client.hset(key(job_id), "submitted", repr(time.time()))
        client.hdel(key(job_id), "submit_error")


def send(
    app: Celery,
    client: redis.Redis,
    job_id: str,
    index: int,
    model: str,
    force: bool = False,
    *,
    priority: int,
    ttl_s: int,
) -> bool:
    """Send chunk ``index`` unless it was sent already (``force``: retry sends again) or
    the job is gone (deleted or expired), at kombu Redis ``priority`` (0 is served first
    and list jobs send 0; ``EMBEDFLEET_DATASET_PRIORITY``, 9 by default, puts dataset
    chunks behind them on the same queue); its ``sent`` bit expires in ``ttl_s``."""
    pipe = client.pipeline()
    pipe.getbit(key(job_id, "sent"), index)
    pipe.exists(key(job_id))
    was_sent, exists = pipe.execute()
    if (was_sent and not force) or not exists:
        return False
    planned = chunk(client, job_id, index)
    rows = "?"
    if planned is not None:
        first = int(planned["first_row"])
        rows = f"{first}-{first + max(int(planned['rows']), 1) - 1}"
    app.send_task(
        DATASET_TASK,
        kwargs={"job_id": job_id, "index": index, "model": model},
        task_id=jobstore.chunk_task_id(job_id, index),
        queue=queue_for(model),
        priority=priority,
        # what inspect and Flower show of the chunk: the producer's task-sent event and
        # the worker's task-received one (tasks.guards.request.summarize) say the same
        kwargsrepr=f"{{'job_id': '{job_id}', 'index': {index}, 'model': '{model}', "
        f"'rows': '{rows}'}}",
        headers={ROWS_HEADER: rows, SENT_HEADER: time.time()},
    )
    keys = [key(job_id, "sent"), key(job_id)]
    client.eval(_MARK_SENT, 2, *keys, index, ttl_s)
    return True


def feed(
    app: Celery,
    client: redis.Redis,
    record: DatasetRecord,
    index: int,
    *,
    priority: int,
    ttl_s: int,
) -> None:
    """Chunk ``index`` left the window: send its successor ``index + window`` (see
    :func:`send` for ``priority`` and ``ttl_s``)."""
    successor = index + record.window
    if successor < record.total and not record.cancelled:
        send(app, client, record.id, successor, record.model, priority=priority, ttl_s=ttl_s)


def state_of(record: DatasetRecord, failed: int, now: float | None = None) -> str:
    """PENDING|RUNNING|SUCCESS|FAILURE|CANCELLED of a dataset job."""
    now = time.time() if now is None else now
    if record.finished is not None:
        return "SUCCESS"
    if record.cancelled:
        return "CANCELLED"
    if record.submit_error or (not record.submitted and now - record.created > SUBMIT_GRACE_S):
        return "FAILURE"
    if failed and record.done + failed >= record.total:
        return "FAILURE"
    return "RUNNING" if (record.done or failed or record.started) else "PENDING"
