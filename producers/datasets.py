"""Dataset jobs from the producer's side: plan, record, send the window, follow, retry.

``submit`` is a scan (``tasks.io.scan``) plus a few Redis writes: the job id is known
(and announced) before the first chunk is sent, and the job finishes with no producer
alive (``tasks.jobs.datasets`` explains the window). See docs/DATASETS.md.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

import producers.dataset_plan as dataset_plan
import producers.embed_options as embed_options
import producers.idempotency as idempotency
import producers.ownership as ownership
import producers.submitting as submitting
from producers.errors import JobFailedError, UsageError
from producers.gather import poll_delays
from producers.job import JobClient, JobKind
from tasks.contract.options import EmbedOptions
from tasks.contract.signing import key_of
from tasks.io import parts, pinning, scan, sources
from tasks.io.plan import DEFAULT_CHUNK_ROWS
from tasks.jobs import claims, datasets, job_admin, jobstore, outputs, redis_full, usage
from tasks.jobs.redis_retry import retry_while_unreachable

log = logging.getLogger(__name__)

#: Seconds between progress polls of a dataset job, at most.
POLL_S = 0.5


def submit_dataset(
    client: JobClient,
    source: str,
    model: str | None,
    output: str,
    fmt: str | None = None,
    field: str | None = None,
    id_field: str | None = None,
    key: str | None = None,
    cache: bool = False,
    chunk_rows: int | None = None,
    window: int = datasets.DEFAULT_WINDOW,
    announce: Callable[[str], None] | None = None,
    overwrite: bool = False,
    idempotency_key: str | None = None,
    dry_run: bool = False,
    **embed: Any,
) -> Any:
    """Plan ``source`` and queue it for ``model``; parts go to ``output`` (a folder or
    ``s3://`` prefix). ``announce(job_id)`` runs once the job is recorded, before any
    chunk is sent. ``model`` may be None for OpenAI batch input (``body.model``).
    ``output`` holding parts or a manifest is refused unless ``overwrite`` (which
    removes them first); one a live job is writing is refused always.
    ``idempotency_key``: a submit retried with the same key and request gets the job
    the first made (``producers.idempotency``). ``dry_run``: plan and estimate only,
    returns a :class:`producers.dry_run.DryRun` (nothing is recorded or queued).
    ``embed``: the embedding options (``dimensions=``; ``tasks.contract.options``)."""
    if window < 1:
        raise UsageError("window must be at least 1")
    if idempotency_key is not None:
        idempotency.check_key(idempotency_key)
    files = sources.resolve(source, fmt)
    dest = parts.normalize(output)
    try:
        parts.check_writable(dest)
    except Exception as exc:  # OSError, or botocore's errors for S3
        raise UsageError(f"cannot write to {output}: {exc}") from None
    asked = model
    plan = None
    if model is None:  # OpenAI batch input names its model
        plan = scan.plan(files, field, id_field, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS)
        model = plan.openai_model
        if model is None:
            raise UsageError("no --model given and the input names none (body.model)")
    job_id = uuid.uuid4().hex
    model, alias, version = client.resolve_model(model, key or idempotency_key or job_id)
    options = embed_options.options_for(client, model, **embed)
    if dry_run:
        import producers.dry_run as dry

        plan = dataset_plan.plan_input(
            client, files, field, id_field, chunk_rows, asked, model, plan
        )
        return dry.for_dataset(client, model, version, plan, dest)
    if idempotency_key is not None:
        wanted = idempotency.digest(
            str(asked or model),
            version,
            idempotency.files_digest(files),
            dest,
            {
                "key": key,
                "format": fmt,
                "field": field,
                "id_field": id_field,
                "chunk_rows": chunk_rows,
                "cache": cache,
                "embed": options.to_wire(),
            },
        )
        held = idempotency.claim(client, idempotency_key, job_id, wanted)
        if held is not None:
            return idempotency.existing_job(client, held, announce)  # type: ignore[no-any-return]
    redis, ttl_s = client.redis, client.settings.result_ttl_s
    try:
        ownership.check(redis, dest, overwrite)  # a quick refusal, before the scan
        plan = dataset_plan.plan_input(
            client, files, field, id_field, chunk_rows, asked, model, plan
        )
        if plan.format == "openai" and options.long_text == "windows":
            raise UsageError(
                "long_text=windows cannot answer an OpenAI batch (one response per "
                "request input); use mean"
            )
        if plan.openai_dimensions:  # the batch's body.dimensions
            options = embed_options.for_batch(client, model, options, plan.openai_dimensions)
        record = _record(
            client, job_id, model, version, alias, plan, source, dest, window, cache, options
        )
        try:  # the claim: after the record, so a claim never names a job with none
            ownership.take(redis, dest, job_id, overwrite, ttl_s=ttl_s)
        except BaseException:
            job_admin.delete(redis, job_id, record.total, ttl_s=ttl_s)
            raise
    except BaseException:
        if idempotency_key is not None:
            idempotency.release(client, idempotency_key, job_id)
        raise
    if idempotency_key is not None:
        idempotency.attach(client, idempotency_key, job_id)
    if announce is not None:
        announce(job_id)
    job = DatasetJob(client, record)
    job.send_window(range(min(window, record.total)))
    return job


def _record(
    client: JobClient,
    job_id: str,
    model: str,
    version: str,
    alias: str,
    plan: scan.Plan,
    source: str,
    dest: str,
    window: int,
    cache: bool,
    options: EmbedOptions,
) -> datasets.DatasetRecord:
    spec = {
        "input": source,
        "output": dest,
        "format": plan.format,
        "text_field": plan.text_field,
        "id_field": plan.id_field,
        "openai_model": plan.openai_model,
        "openai_dimensions": plan.openai_dimensions,
        "window": window,
        "cache": cache,
        "embed": options.to_wire(),
        # what the input was at submit (tasks.io.pinning): the manifest copies it
        "snapshot": [pinning.public(f) for f in plan.files],
    }
    redis, ttl_s = client.redis, client.settings.result_ttl_s
    job_key = key_of(client.settings)  # workers refuse a record it did not sign
    return retry_while_unreachable(  # type: ignore[no-any-return]
        lambda: datasets.create(
            redis, job_id, model, version, alias, plan, spec, job_key, ttl_s=ttl_s
        )
    )


class DatasetJob:
    """A dataset job: follow it with :meth:`status`, wait with :meth:`wait` (no vectors
    are gathered), re-run what failed with :meth:`retry`, drop it with :meth:`delete`."""

    kind: JobKind = "dataset"

    def __init__(self, client: JobClient, record: datasets.DatasetRecord) -> None:
        self.client = client
        self.record = record
        self.id = record.id
        self.model = record.model

    def __repr__(self) -> str:
        return f"DatasetJob(id={self.id!r}, model={self.model!r}, rows={self.record.n})"

    @property
    def output(self) -> str:
        return self.record.output

    def send_window(self, indices: Any, force: bool = False) -> int:
        """Send chunks ``indices`` (retrying while Redis is unreachable); on failure the
        job is marked failed with the reason and ``retry`` can finish it."""
        redis, app, settings = self.client.redis, self.client.app, self.client.settings
        priority, ttl_s = settings.dataset_priority, settings.result_ttl_s
        sent = 0
        try:
            for index in indices:
                sent += retry_while_unreachable(
                    lambda i=int(index): datasets.send(
                        app, redis, self.id, i, self.model, force, priority=priority, ttl_s=ttl_s
                    ),
                    submitting.SUBMIT_RETRY_S,
                )
            retry_while_unreachable(lambda: datasets.mark_submitted(redis, self.id))
        except Exception as exc:
            reason = f"submit stopped after {sent} chunk(s): {type(exc).__name__}: {exc}"
            if redis_full.is_redis_full(exc):
                reason = f"submit stopped after {sent} chunk(s): " + redis_full.reason(
                    "sending chunks", self.id
                )
            try:
                retry_while_unreachable(
                    lambda: datasets.mark_submitted(redis, self.id, reason), 5.0
                )
            except Exception:  # Redis still down: the grace period marks it FAILURE
                log.warning("event=submit_failed job=%s reason=%r", self.id, reason)
            raise UsageError(f"job {self.id}: {reason}; run `embedfleet retry {self.id}`") from exc
        return sent

    def _fresh(self) -> datasets.DatasetRecord:
        redis = self.client.redis
        found = retry_while_unreachable(lambda: datasets.load(redis, self.id))
        if found is not None:
            self.record = found
        return self.record

    def status(self) -> dict[str, Any]:
        """The contract's status keys plus rows, times, ETA and failed chunks' rows."""
        redis = self.client.redis
        record = self._fresh()
        _, failed = retry_while_unreachable(lambda: jobstore.progress(redis, self.id))
        state = datasets.state_of(record, len(failed))
        plan = datasets.chunks(redis, self.id) if failed else None
        errors = []
        for index in sorted(failed):
            entry: dict[str, Any] = {"chunk": index, "error": failed[index]}
            if plan is not None and index < plan.size:
                first = int(plan[index]["first_row"])
                entry["rows"] = [first, first + int(plan[index]["rows"]) - 1]
            errors.append(entry)
        if record.submit_error and state == "FAILURE":
            errors.append({"chunk": -1, "error": record.submit_error})
        elif state == "FAILURE" and not failed:
            errors.append(
                {
                    "chunk": -1,
                    "error": "submit did not finish sending the job; "
                    f"run `embedfleet retry {self.id}`",
                }
            )
        eta = None
        if record.started and record.rows_done and state == "RUNNING":
            rate = record.rows_done / max(1e-6, time.time() - record.started)
            eta = round((record.n - record.rows_done) / rate, 1)
        from tasks.jobs import reclaim  # reads the settings: not at CLI import time

        waiting = reclaim.lapsed_chunks(redis, self.id)
        return {
            "id": self.id,
            "kind": "dataset",
            "model": record.model,
            "version": record.version,
            "alias": record.alias or None,
            "state": state,
            "done": record.done,
            "total": record.total,
            "texts": record.n,
            "rows_done": record.rows_done,
            "failed": len(failed),
            "errors": errors,
            "created": record.created,
            "started": record.started,
            "finished": record.finished,
            "eta_s": eta,
            "input": record.spec.get("input"),
            "output": record.output,
            "output_problem": _output_problem(record) if state == "SUCCESS" else None,
            "waiting_on_dead_worker": waiting,
            "usage": usage.totals(redis, self.id),
        }

    def wait(self, timeout: float | None = 600, progress: bool = False, **_: Any) -> str:
        """Block until the job ends; returns its output folder. Raises
        :class:`JobFailedError` when chunks failed, ``TimeoutError`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.record.n, unit="row", desc=f"{self.model} {self.id[:8]}")
        delays = poll_delays(POLL_S, first=0.01)
        try:
            while True:
                status = self.status()
                if bar is not None:
                    bar.update(status["rows_done"] - bar.n)
                if status["state"] == "SUCCESS" and status["output_problem"]:
                    problem = f"the output no longer verifies: {status['output_problem']}"
                    raise JobFailedError(self.id, {-1: problem}, status["total"])
                if status["state"] == "SUCCESS":
                    return self.output
                if status["state"] in ("FAILURE", "CANCELLED"):
                    errors = {e["chunk"]: e["error"] for e in status["errors"]}
                    raise JobFailedError(self.id, errors or {-1: status["state"]}, status["total"])
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"job {self.id}: {status['done']} of {status['total']} chunks done "
                        f"after {timeout} s"
                    )
                time.sleep(next(delays))
        finally:
            if bar is not None:
                bar.close()

    def retry(self) -> int:
        """Send again the chunks that failed, whose part is missing, or that were never
        sent; returns how many. Nothing else runs again."""
        redis, ttl_s = self.client.redis, self.client.settings.result_ttl_s
        record = self._fresh()
        if record.cancelled:
            raise UsageError(_CANCELLED.format(job=self.id))
        held = claims.holds(redis, record.output, self.id)  # the job is still live
        ownership.retake(redis, record.output, self.id, ttl_s=ttl_s)
        from tasks.jobs import reclaim  # reads the settings: not at CLI import time

        given_back = reclaim.reclaim_job(redis, self.client.app.connection_for_write, self.id)
        total = record.total
        done = datasets.bits(redis, self.id, "donebits", total)
        sent = datasets.bits(redis, self.id, "sent", total)
        _, failed = jobstore.progress(redis, self.id)
        outputs.recall(redis, record, ttl_s=ttl_s)  # a finished job's checksums, from its manifest
        present = _present_parts(record.output, outputs.recorded(redis, self.id, total))
        lost = np.flatnonzero(done & ~np.isin(np.arange(total), present))
        plan = datasets.chunks(redis, self.id)
        for index in lost:  # written once, gone now: count it undone
            job_admin.unmark_done(redis, self.id, int(index), int(plan[index]["rows"]))
        ended = done | np.isin(np.arange(total), list(failed))
        predecessor_ended = np.concatenate(
            [np.ones(min(record.window, total), dtype=bool), ended[: max(0, total - record.window)]]
        )
        unsent = np.flatnonzero(~sent & predecessor_ended)
        todo = sorted({*failed, *map(int, lost), *map(int, unsent)})
        if not todo and done.all() and record.finished is None:
            todo = [total - 1]  # every part is in but the manifest is not: redo the last
        if not todo:
            if not held:
                ownership.release(redis, record.output, self.id, ttl_s=ttl_s)
            return given_back
        parts.remove(record.output, [parts.MANIFEST])  # no manifest while parts are redone
        job_admin.clear_for_retry(redis, self.id, todo)
        self.send_window(todo, force=True)
        return len(todo) + given_back

    def cancel(self) -> int:
        """Stop the job: chunks not started are skipped; written parts stay."""
        redis, ttl_s = self.client.redis, self.client.settings.result_ttl_s
        jobstore.mark_cancelled(redis, self.id)
        record = self._fresh()
        pending = [jobstore.chunk_task_id(self.id, i) for i in range(record.total)]
        sent = datasets.bits(redis, self.id, "sent", record.total)
        done = datasets.bits(redis, self.id, "donebits", record.total)
        ids = [pending[i] for i in np.flatnonzero(sent & ~done)]
        if ids:
            self.client.app.control.revoke(ids)
        ownership.release(redis, record.output, self.id, ttl_s=ttl_s)
        return len(ids)

    def delete(self) -> int:
        """Drop the job's keys from Redis now (its parts stay where they were written)
        and release its destination."""
        redis, ttl_s = self.client.redis, self.client.settings.result_ttl_s
        ownership.release(redis, self.output, self.id, ttl_s=ttl_s)
        return job_admin.delete(redis, self.id, self.record.total, ttl_s=ttl_s)


_CANCELLED = (
    "job {job} was cancelled: the workers hold its chunks as revoked, so it cannot be "
    "resumed; submit it again (parts already written stay in place)"
)


def _present_parts(output: str, recorded: np.ndarray) -> list[int]:
    """Chunk indices whose part is in ``output`` at the size its chunk recorded (any
    size where none was recorded)."""
    found = []
    for name, size in parts.listing(output).items():
        if not parts.is_part(name):
            continue
        index = int(name[5:-8])
        if index < recorded.size and recorded[index]["bytes"] not in (0, size):
            continue  # changed since its chunk wrote it: written again
        found.append(index)
    return found


def _output_problem(record: datasets.DatasetRecord) -> str | None:
    """What is wrong with a finished job's output (cheap: manifest and listing)."""
    from producers.verify import quick_check

    try:
        return quick_check(record.output, record.id)
    except Exception as exc:  # OSError, botocore's errors: the output cannot be listed
        return f"cannot read {record.output}: {exc}"
