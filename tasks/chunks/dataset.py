"""The dataset chunk task: read a planned input range, encode it, write its part.

Thin like the list-path task (``tasks.chunks.embed``): the message holds only
``(job_id, index, model)``; the worker reads the job's spec and its chunk's range
from Redis (``tasks.jobs.datasets``), its rows from the input (``tasks.io.ranges``),
encodes with the encoder its boot installed, writes ``part-<index>.parquet``
(``tasks.io.parts``), records its checksum and marks the chunk done. No vector goes to
Redis: the task stores no result. A part is written only while the job holds its
destination's claim; the worker that marks the last chunk done writes the manifest
(``tasks.jobs.outputs``), and the job's end (success, or failure of its last chunk)
releases the claim and sweeps ``.part-*.tmp`` leftovers.
Finishing or failing a chunk sends the next one of the job's window.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np
import redis
from celery import Task

from tasks.app import app
from tasks.chunks import embed
from tasks.contract.errors import (
    InputError,
    InvalidRequest,
    JobCancelled,
    PermanentError,
    RedisMemoryFull,
    TransientError,
)
from tasks.contract.logs import event_logger
from tasks.contract.signing import key_of
from tasks.io import data_roots, parts, ranges
from tasks.jobs import dataset_trust, datasets, jobstore, outputs, redis_full, usage
from tasks.routing import DATASET_TASK, MODEL_NAME_RE

log = event_logger(__name__)


class DatasetChunkTask(Task):  # type: ignore[misc]
    """Records a failed chunk on its job and keeps the window moving past it."""

    #: Hostile bodies and headers are refused before Celery's trace setup (tasks/guards/request.py).
    Request = "tasks.guards.request:ChunkRequest"

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: dict[str, Any], einfo: Any
    ) -> None:
        chunk = embed.chunk_of(kwargs)
        if chunk is None:
            return
        job_id, index = chunk
        client, ttl_s = self.app.backend.client, embed.ttl_of(self.app, job_id)
        message = embed.failure_message(exc, job_id)

        def record() -> None:
            found = datasets.load(client, job_id)
            if found is None:
                return
            jobstore.mark_failed(client, job_id, index, message, ttl_s=ttl_s)
            if not isinstance(exc, JobCancelled):
                try:
                    feed(self.app, client, found, index)
                except redis.ResponseError as error:
                    if not redis_full.is_redis_full(error):
                        raise
                    # the next chunks stay unsent: `retry` sends them once there is room
                    log.error("event=redis_full job=%s chunk=%d step=%r", job_id, index, "feed")
                    redis_full.stop_window(client, datasets.key(job_id), job_id)
            _end_if_failed(client, job_id, ttl_s)

        embed.with_redis_retry(record, "recording a dataset chunk failure")


def feed(app: Any, client: Any, record: datasets.DatasetRecord, index: int) -> None:
    """``datasets.feed`` at the priority of ``app``'s settings (this worker's) and the
    TTL the job's record keeps."""
    settings = app.settings
    datasets.feed(
        app,
        client,
        record,
        index,
        priority=settings.dataset_priority,
        ttl_s=embed.ttl_of(app, record.id),
    )


def _check(job_id: Any, index: Any, model: Any) -> tuple[str, int, str]:
    if not isinstance(job_id, str) or not job_id or len(job_id) > 128:
        raise InvalidRequest(f"job_id must be a non-empty string, got {job_id!r:.60}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidRequest(f"index must be a non-negative integer, got {index!r:.60}")
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise InvalidRequest(f"model must be a model name, got {model!r:.60}")
    return job_id, index, model


@app.task(
    name=DATASET_TASK,
    base=DatasetChunkTask,
    bind=True,
    ignore_result=True,
    track_started=False,
    **embed.CHUNK_RETRY,
)
def embed_range(self: Task, job_id: Any = None, index: Any = None, model: Any = None) -> None:
    """Embed chunk ``index`` of dataset job ``job_id`` into its parquet part."""
    job_id, index, model = _check(job_id, index, model)
    client = self.app.backend.client
    retry = embed.with_redis_retry
    record = retry(lambda: datasets.load(client, job_id), "reading a dataset job")
    if record is None:
        log.warning("event=dataset_chunk_orphan job=%s chunk=%d", job_id, index)
        return  # deleted or expired: nothing to do, nothing to record
    task_id, attempt = str(self.request.id), self.request.retries
    try:
        delivery = embed.begin_delivery(self.app, task_id, attempt)
        try:
            embed.check_deliveries(delivery, job_id, index, self.app.settings.max_deliveries)
            _run_range(self, record, job_id, index, model)
        finally:
            embed.end_delivery(self.app, task_id, attempt)
    except RedisMemoryFull as exc:
        embed.record_redis_full(client, job_id, index, exc, ttl_s=embed.ttl_of(self.app, job_id))
        raise


def _run_range(
    self: Task, record: datasets.DatasetRecord, job_id: str, index: int, model: str
) -> None:
    """Read, encode and write chunk ``index`` (its delivery is being counted)."""
    client, ttl_s = self.app.backend.client, embed.ttl_of(self.app, job_id)
    retry = embed.with_redis_retry
    if record.cancelled:
        raise JobCancelled(f"job {job_id} was cancelled")
    # Signed by this fleet's job key, else nothing is read or written (tasks/jobs/dataset_trust.py)
    key = key_of(self.app.settings)
    plan, file = retry(
        lambda: dataset_trust.verified_chunk(client, record, index, key), "reading the plan"
    )
    name = parts.part_name(index)
    output = record.output
    roots = data_roots.parse(self.app.settings.data_roots)
    data_roots.check(file["url"], roots, "read")
    data_roots.check(output, roots, "write")
    if retry(lambda: datasets.is_done(client, job_id, index), "checking") and parts.exists(
        output, name
    ):
        log.info("event=dataset_chunk_already_done job=%s chunk=%d", job_id, index)
        _finish(self, record, index, int(plan["rows"]))
        return
    retry(lambda: datasets.mark_started(client, job_id), "marking a job started")
    started = time.perf_counter()
    try:
        got = ranges.read_chunk(record.spec, file, plan)
    except (InputError, PermanentError):
        raise
    except OSError as exc:
        raise PermanentError(
            f"worker {socket.gethostname()} cannot read {file['url']}: {exc}. Local inputs "
            f"must be readable by every worker at the same path (same machine or a shared "
            f"filesystem); use s3:// when workers run elsewhere"
        ) from exc
    encoder = embed.encoder_of(self.app)
    options = {
        "version": record.version,
        "cache": bool(record.spec.get("cache", False)),
        **record.spec.get("embed", {}),  # the job's EmbedOptions (tasks.contract.options)
    }
    try:
        vectors, _version, *more = encoder(model, got.texts, options)
    except (PermanentError, TransientError) as exc:
        raise embed.naming_model(exc, model) from exc.__cause__
    except Exception as exc:  # a bug in a wrapper: fail the chunk, keep serving
        log.exception("event=chunk_error job=%s chunk=%s model=%s", job_id, index, model)
        raise PermanentError(f"model {model!r} failed to encode: {exc}") from exc
    extra = None
    if got.requests is not None and got.positions is not None:
        extra = {"request": got.requests, "index": got.positions}
    columns = dict(more[0]) if more else {}
    retry(lambda: usage.record(client, job_id, index, columns, ttl_s=ttl_s), "recording usage")
    first_row, ids, rows = int(plan["first_row"]), got.ids, None
    source = columns.pop("source_row", None)  # long_text=windows: a row per window
    if source is not None:
        rows = first_row + np.asarray(source, dtype=np.int64)
        ids = None if ids is None else [ids[i] for i in source]
        if extra is not None:
            extra = {k: [v[i] for i in source] for k, v in extra.items()}
    data = parts.part_bytes(first_row, vectors, ids, extra, columns, rows=rows)
    retry(
        lambda: outputs.require_claim(client, record, ttl_s=ttl_s),
        "checking the destination's claim",
    )
    try:
        parts.put(output, name, data)
    except OSError as exc:
        raise PermanentError(f"cannot write {output}{name}: {exc}") from exc
    retry(
        lambda: outputs.record_part(client, job_id, index, data, ttl_s=ttl_s), "recording the part"
    )
    retry(lambda: datasets.set_dimension(client, job_id, int(vectors.shape[1])), "dimension")
    _finish(self, record, index, int(plan["rows"]))
    log.info(
        "event=dataset_chunk_done job=%s chunk=%d rows=%d seconds=%.3f",
        job_id,
        index,
        len(got.texts),
        time.perf_counter() - started,
    )


def _finish(task: Task, record: datasets.DatasetRecord, index: int, rows: int) -> None:
    """Mark the chunk done, send the next one, and write the manifest after the last."""
    client, ttl_s = task.app.backend.client, embed.ttl_of(task.app, record.id)
    retry = embed.with_redis_retry
    done = retry(
        lambda: datasets.mark_done(client, record.id, index, rows, ttl_s=ttl_s), "marking done"
    )
    if done < 0:  # deleted (or expired) while this chunk ran: write nothing more
        log.info("event=dataset_chunk_orphan job=%s chunk=%d", record.id, index)
        return
    retry(lambda: feed(task.app, client, record, index), "sending the next chunk")
    if done != record.total:  # the job's last chunk to end may be a success after a failure
        retry(lambda: _end_if_failed(client, record.id, ttl_s), "ending a failed job")
        return
    fresh = retry(lambda: datasets.load(client, record.id), "reading a dataset job")
    if fresh is None or fresh.finished is not None:
        return
    retry(lambda: outputs.write_manifest(client, fresh, ttl_s=ttl_s), "writing the manifest")
    retry(lambda: datasets.mark_finished(client, record.id), "marking a job finished")
    retry(
        lambda: outputs.end(client, fresh, finished=True, ttl_s=ttl_s), "releasing the destination"
    )
    log.info("event=dataset_job_done job=%s rows=%d parts=%d", record.id, record.n, record.total)


def _end_if_failed(client: Any, job_id: str, ttl_s: int) -> None:
    """When every chunk of the job has ended and some failed, the job is FAILURE: end it
    (``tasks.jobs.outputs.end``). One HLEN while no chunk has failed."""
    failed = datasets.failed_count(client, job_id)
    if not failed:
        return
    record = datasets.load(client, job_id)
    if record is not None and record.finished is None and record.done + failed >= record.total:
        outputs.end(client, record, ttl_s=ttl_s)
