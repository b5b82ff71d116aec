"""A batch's life: validating -> in_progress -> finalizing -> completed | failed |
cancelling -> cancelled | expired.

A batch is a dataset job (``--format openai``) over its input file in the store; its
parts go to ``<store>batches/<batch id>/``. When the job ends, whichever gateway sees
it first (a read of the batch, or the watch of open batches) assembles the output and
error files under a Redis lock. Their file ids follow from the batch id, so a gateway
that dies mid-assembly leaves nothing a second one does not overwrite, and a gateway
restart mid-batch loses nothing: the job runs in the fleet and the record is in Redis.

While it runs, ``request_counts`` are the requests of the chunks done and failed so far
(``gateway.batch_counts``), exactly what the files will hold. A cancelled batch, as
OpenAI's, keeps what completed: it stays ``cancelling`` while a worker still runs one of
its chunks (at most :data:`CANCEL_DRAIN_S`), then its output file holds every request
that completed and its error file those that failed; requests never run are in
neither, so ``completed + failed`` may be less than ``total``. A batch still running
at the end of its window expires as OpenAI's do: its job is cancelled at once, the
output file holds every request that completed, and the error file also holds each
request that did not run (or was running) with code ``batch_expired``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway import batch_counts, files
from gateway.batch_store import WINDOW_S, BatchRecord, save, update
from gateway.filestore import FileStore
from producers.errors import UsageError
from tasks.contract.errors import EmbedfleetError
from tasks.contract.logs import event_logger
from tasks.jobs import datasets, jobstore, reclaim

log = event_logger(__name__)

#: Seconds one gateway holds the right to assemble a batch's files.
FINALIZE_LOCK_S = 600
#: Seconds a batch may stay ``validating`` (its gateway died before the job was made).
VALIDATING_GRACE_S = 600
#: Seconds a cancelled batch waits for the chunks workers are running (OpenAI: "up to
#: 10 minutes"); what has not finished by then is left out of its output.
CANCEL_DRAIN_S = 600
#: The error line of a request an expired batch never ran (OpenAI's words).
EXPIRED = (
    "batch_expired",
    "This request could not be executed before the completion window expired.",
)


def parts_folder(store: FileStore, batch_id: str) -> str:
    return store.url(f"batches/{batch_id}/")


def output_ids(batch_id: str) -> tuple[str, str]:
    """The output and error file ids of a batch (fixed: assembling twice overwrites)."""
    tail = batch_id.removeprefix("batch_")
    return f"file-{tail}-output", f"file-{tail}-errors"


def count_requests(store: FileStore, file_id: str) -> int:
    """Non-blank lines of a stored file: the batch's requests."""
    count, pending = 0, b""
    for block in store.read(files.content_name(file_id)):
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        count += sum(1 for line in lines if line.strip())
    return count + (1 if pending.strip() else 0)


def start(client: Any, store: FileStore, batch: BatchRecord) -> None:
    """Count the requests and queue the dataset job (the batch was saved validating)."""
    redis = client.redis
    source = store.url(files.content_name(batch.obj["input_file_id"]))
    try:
        total = count_requests(store, batch.obj["input_file_id"])
        if total == 0:
            raise UsageError("the input file holds no request")
        job = client.submit_dataset(
            source, None, parts_folder(store, batch.id), fmt="openai", key=batch.id
        )
    except (EmbedfleetError, OSError, ValueError) as exc:
        batch.fail("invalid_input", str(exc))
        save(redis, batch)
        return
    datasets.mark_batch(redis, job.id, batch.id)  # `embedfleet cancel JOB` keeps its claim

    def queued(record: BatchRecord) -> None:
        record.job = job.id
        record.obj["request_counts"]["total"] = total
        if record.status == "validating":  # else a cancel came while it was queued
            record.move("in_progress")

    saved = update(redis, batch.id, queued)
    batch.obj, batch.job = saved.obj, saved.job
    if saved.status == "cancelling":
        job.cancel(keep_claim=True)


def refresh(client: Any, store: FileStore, batch: BatchRecord) -> BatchRecord:
    """Move ``batch`` on as its job did; assemble its files when the job ended."""
    if batch.status in ("completed", "failed", "cancelled", "expired"):
        return batch
    redis = client.redis
    if batch.job is None:
        if time.time() - batch.obj["created_at"] > VALIDATING_GRACE_S:
            batch.fail("gateway_stopped", "the gateway stopped before the batch was queued")
            save(redis, batch)
        return batch
    record = datasets.load(redis, batch.job)
    if record is None:
        batch.fail("job_expired", f"the batch's job {batch.job} is no longer in Redis")
        save(redis, batch)
        return batch
    _, failed = jobstore.progress(redis, batch.job)
    state = datasets.state_of(record, len(failed))
    if batch.status == "cancelling" or state == "CANCELLED":
        return _cancelled(client, store, batch)
    ended = state == "SUCCESS" or (state == "FAILURE" and record.done + len(failed) >= record.total)
    if ended:
        return finalize(client, store, batch)
    if state == "FAILURE":
        batch.fail("job_failed", record.submit_error or "the batch's job could not be sent")
        save(redis, batch)
        return batch
    if time.time() > batch.obj["created_at"] + WINDOW_S:
        client.job(batch.job).cancel(keep_claim=True)
        return finalize(client, store, batch, ending="expired")
    _count(redis, batch)
    save(redis, batch)
    return batch


def _count(redis: Any, batch: BatchRecord) -> None:
    """Set ``request_counts`` to the requests done and failed now (``batch_counts``)."""
    counts = batch.obj["request_counts"]
    counts["completed"], counts["failed"] = batch_counts.request_counts(
        redis, str(batch.job), counts["total"]
    )


def _cancelled(client: Any, store: FileStore, batch: BatchRecord) -> BatchRecord:
    """A cancelled batch's job: wait while a live worker runs one of its chunks (up to
    :data:`CANCEL_DRAIN_S` after the cancel), then assemble what completed."""
    redis = client.redis
    if batch.status != "cancelling":  # its job was cancelled elsewhere (`embedfleet cancel`)
        batch.move("cancelling")
    since = batch.obj["cancelling_at"] or time.time()
    if reclaim.held_live(redis, str(batch.job)) and time.time() < since + CANCEL_DRAIN_S:
        _count(redis, batch)
        save(redis, batch)
        return batch
    return finalize(client, store, batch, ending="cancelled")


def cancel(client: Any, batch: BatchRecord) -> BatchRecord:
    """Revoke the job's chunks not started; the chunks running finish (their parts
    stay writable: the job keeps its claim until the batch's files are made). A batch
    still validating has no job yet: :func:`start` cancels it once it is queued."""
    saved = update(client.redis, batch.id, lambda record: record.move("cancelling"))
    if saved.job is not None:
        client.job(saved.job).cancel(keep_claim=True)
    return saved


def finalize(
    client: Any, store: FileStore, batch: BatchRecord, ending: str = "completed"
) -> BatchRecord:
    """Assemble the output and error files of an ended job (once, under a lock); the
    batch then reads ``ending``: ``completed``, ``cancelled`` (what completed before
    the cancel, the batch ``cancelling`` meanwhile, as OpenAI's) or ``expired`` (what
    completed, and an error line for each request that did not)."""
    redis = client.redis
    lock = f"{batch.id}:finalizing"
    partial = ending in ("cancelled", "expired")  # its job was cancelled
    if not redis.set("embedfleet:lock:" + lock, "1", nx=True, ex=FINALIZE_LOCK_S):
        if not partial:
            batch.move("finalizing")  # another gateway is at it
        return batch
    try:
        if not partial:
            batch.move("finalizing")
            save(redis, batch)
        try:
            if partial:  # nothing more of its job will be written
                client.job(batch.job).release_claim()
            unrun = EXPIRED if ending == "expired" else None
            served, failed = _assemble(client, store, batch, partial=partial, unrun=unrun)
        except (EmbedfleetError, OSError, ValueError) as exc:
            log.warning("event=batch_finalize_failed batch=%s error=%r", batch.id, exc)
            batch.fail("output_failed", f"the output could not be assembled: {exc}")
            save(redis, batch)
            return batch
        batch.obj["request_counts"].update(completed=served, failed=failed)
        batch.move(ending)
        save(redis, batch)
        if ending == "expired":
            log.info("event=batch_expired batch=%s served=%d failed=%d", batch.id, served, failed)
        elif partial:
            log.info("event=batch_cancelled batch=%s served=%d failed=%d", batch.id, served, failed)
        else:
            log.info("event=batch_completed batch=%s served=%d failed=%d", batch.id, served, failed)
        return batch
    finally:
        redis.delete("embedfleet:lock:" + lock)


def _assemble(
    client: Any,
    store: FileStore,
    batch: BatchRecord,
    partial: bool = False,
    unrun: tuple[str, str] | None = None,
) -> tuple[int, int]:
    """Write the output and error files; ``partial`` (a cancelled job): requests of
    chunks that never ran are left out, or with ``unrun`` written as that error."""
    from producers.openai_output import write_openai_output

    job = client.job(batch.job)
    out_id, err_id = output_ids(batch.id)
    with tempfile.TemporaryDirectory(prefix="embedfleet-batch-") as tmp:
        every, good, bad = (Path(tmp) / n for n in ("all.jsonl", "out.jsonl", "err.jsonl"))
        write_openai_output(job, every, partial=partial, unrun=unrun)
        served = failed = 0
        with every.open("rb") as lines, good.open("wb") as out, bad.open("wb") as err:
            for line in lines:
                if json.loads(line).get("error") is None:
                    out.write(line)
                    served += 1
                else:
                    err.write(line)
                    failed += 1
        for file_id, path, count in ((out_id, good, served), (err_id, bad, failed)):
            if count == 0:
                continue
            size = store.save_path(files.content_name(file_id), path)
            name = f"{batch.id}_{'output' if file_id == out_id else 'error'}.jsonl"
            files.add(client.redis, file_id, name, "batch_output", size)
    batch.obj["output_file_id"] = out_id if served else None
    batch.obj["error_file_id"] = err_id if failed else None
    return served, failed
