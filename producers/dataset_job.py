"""A dataset job from the producer's side: :class:`DatasetJob` follows it, waits for it,
retries what failed, cancels and deletes it. ``producers.dataset_submit`` makes one.

The job finishes with no producer alive: the workers send the window's next chunks
(``tasks.jobs.datasets`` explains the window). See docs/DATASETS.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import producers.ownership as ownership
import producers.progress as progress_text
import producers.submitting as submitting
from producers.errors import JobFailedError, UsageError
from producers.job import JobClient, JobKind
from producers.polling import Poller, bar_for
from tasks.contract.logs import event_logger
from tasks.io import parts
from tasks.jobs import (
    claims,
    datasets,
    job_admin,
    jobstore,
    lost,
    outputs,
    reclaim,
    redis_full,
    usage,
)
from tasks.jobs.redis_retry import retry_while_unreachable
from tasks.routing import queue_for

log = event_logger(__name__)

#: Seconds between progress polls of a dataset job, at most.
POLL_S = 0.5


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
        eta = progress_text.eta_s(record.n, record.rows_done, record.started, state)
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
        bar = bar_for(progress, self.record.n, "row", self.model, self.id)
        with Poller(self.id, timeout, POLL_S, first=0.01, bar=bar) as poller:
            while True:
                status = self.status()
                poller.show(status["rows_done"])
                if status["state"] == "SUCCESS" and status["output_problem"]:
                    problem = f"the output no longer verifies: {status['output_problem']}"
                    raise JobFailedError(self.id, {-1: problem}, status["total"])
                if status["state"] == "SUCCESS":
                    return self.output
                if status["state"] in ("FAILURE", "CANCELLED"):
                    errors = {e["chunk"]: e["error"] for e in status["errors"]}
                    raise JobFailedError(self.id, errors or {-1: status["state"]}, status["total"])
                poller.pause(status["done"], status["total"])

    def retry(self) -> int:
        """Send again the chunks that failed, whose part is missing, or that were never
        sent; returns how many. Nothing else runs again."""
        redis, ttl_s = self.client.redis, self.client.settings.result_ttl_s
        record = self._fresh()
        if record.cancelled:
            raise UsageError(_CANCELLED.format(job=self.id))
        held = claims.holds(redis, record.output, self.id)  # the job is still live
        ownership.retake(redis, record.output, self.id, ttl_s=ttl_s)
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
        stranded = self._stranded(sent)
        todo = sorted({*failed, *map(int, lost), *map(int, unsent), *stranded})
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

    def _stranded(self, sent: np.ndarray) -> list[int]:
        """Chunks sent that are nowhere (``tasks.jobs.lost``): on no queue, held by no
        worker, neither done nor failed."""
        redis = self.client.redis

        def unfinished() -> set[int]:
            done = datasets.bits(redis, self.id, "donebits", len(sent))
            _, failed = jobstore.progress(redis, self.id)
            return set(np.flatnonzero(sent & ~done).tolist()) - set(failed)

        connect = self.client.app.connection_for_write
        return lost.missing(redis, connect, self.id, queue_for(self.model), unfinished)

    def cancel(self, keep_claim: bool = False) -> int:
        """Stop the job: chunks not started are skipped; written parts stay. A chunk a
        worker is running then cannot write its part (the destination is released), unless
        ``keep_claim``: the destination stays the job's so running chunks finish, and the
        caller releases it (:meth:`release_claim`) once they have. A gateway batch's job
        always keeps it: its gateway releases it once the batch's files are made, with
        what the running chunks wrote."""
        redis, ttl_s = self.client.redis, self.client.settings.result_ttl_s
        jobstore.mark_cancelled(redis, self.id)
        record = self._fresh()
        keep_claim = keep_claim or bool(record.batch)
        pending = [jobstore.chunk_task_id(self.id, i) for i in range(record.total)]
        sent = datasets.bits(redis, self.id, "sent", record.total)
        done = datasets.bits(redis, self.id, "donebits", record.total)
        ids = [pending[i] for i in np.flatnonzero(sent & ~done)]
        if ids:
            self.client.app.control.revoke(ids)
        if not keep_claim:
            ownership.release(redis, record.output, self.id, ttl_s=ttl_s)
        return len(ids)

    def release_claim(self) -> None:
        """End this job's claim on its destination (see :meth:`cancel`)."""
        ttl_s = self.client.settings.result_ttl_s
        ownership.release(self.client.redis, self.output, self.id, ttl_s=ttl_s)

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
