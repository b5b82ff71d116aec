"""A list job: texts in, vectors gathered back in input order.

:class:`ListJob` is what ``EmbeddingClient.submit`` returns and ``EmbeddingClient.job``
finds again for a list job; it implements :class:`producers.job.Job`. Its sending
(``send_chunks``, ``retry``) is done by ``producers.submitting``, handed the texts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

import producers.progress as progress
import producers.submitting as submitting
from producers.errors import JobFailedError, UsageError
from producers.gather import Gatherer
from producers.job import JobClient, JobKind
from producers.polling import Poller, bar_for
from tasks.jobs import job_admin, jobstore, lost, reclaim, usage
from tasks.jobs.redis_retry import REDIS_RETRY_S, retry_while_unreachable
from tasks.routing import queue_for

#: Seconds between progress polls while waiting for a job, at most: polls start at
#: ``producers.gather.FIRST_POLL_S`` and grow up to this.
POLL_INTERVAL_S = 0.1
#: Seconds a one-shot read (``job``, ``status``) retries before it reports Redis down:
#: the same window as every other call (README: "Producers retry while Redis restarts").
STATUS_RETRY_S = REDIS_RETRY_S


class ListJob:
    """A submitted list job: follow it with :meth:`status`, gather it with :meth:`wait`."""

    kind: JobKind = "list"

    def __init__(
        self,
        client: JobClient,
        record: jobstore.JobRecord,
        texts: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        self.record = record
        self.id = record.id
        self.model = record.model
        self._texts = texts  # kept by the submitting process, for retry
        self._windows: bool | None = None  # long_text=windows, read from the record
        #: After :meth:`wait`: per input row, ``tokens`` (int32, what the model saw,
        #: prompt and special tokens included) and ``truncated`` (bool). Under
        #: ``long_text=windows``, per returned vector (a window): ``row`` (int64, its
        #: input row), ``window``, ``char_start``, ``char_end``, ``tokens``, ``truncated``.
        self.columns: dict[str, np.ndarray] = {}

    @property
    def rows(self) -> np.ndarray:
        """After :meth:`wait`: the input row of each returned vector (int64). Under
        ``long_text=windows`` a row repeats once per window; else it is ``0 .. n-1``."""
        if "row" in self.columns:
            return self.columns["row"]
        return np.arange(self.record.n, dtype=np.int64)

    @property
    def windows(self) -> bool:
        """True for a ``long_text=windows`` job (a vector per window: see :meth:`wait`)."""
        if self._windows is None:
            from producers.embed_options import recorded

            redis = self.client.redis
            options = retry_while_unreachable(lambda: recorded(redis, self.id), STATUS_RETRY_S)
            self._windows = options.long_text == "windows"
        return self._windows

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, model={self.model!r}, texts={self.record.n})"

    def send_chunks(self, indices: Iterable[int], cache: bool = True) -> None:
        """Send chunks ``indices``, retrying while Redis is unreachable; when it stays
        down, the chunks not sent are recorded as failed with the reason (``retry``
        sends them again) and :class:`UsageError` says so."""
        if self._texts is None:
            raise UsageError(f"job {self.id}: the texts are not in this process")
        submitting.send_list_chunks(
            self.client.app,
            self.client.redis,
            self.record,
            self._texts,
            list(indices),
            cache,
            ttl_s=self.client.settings.result_ttl_s,
        )

    def retry(self, texts: Sequence[str] | None = None) -> int:
        """Send again the chunks that failed (or were never sent); returns how many.
        Texts come from ``texts``, the submitting process, or the input file recorded."""
        redis = self.client.redis
        if jobstore.is_cancelled(redis, self.id):
            raise UsageError(
                f"job {self.id} was cancelled: the workers hold its chunks as revoked, so it "
                f"cannot be resumed; submit it again"
            )
        # Chunks a dead worker holds go back on their queue now (their messages carry the texts).
        given_back = reclaim.reclaim_job(redis, self.client.app.connection_for_write, self.id)
        todo = submitting.chunks_to_retry(redis, self.record) | self._lost()
        if not todo:
            return given_back
        given = texts if texts is not None else self._texts
        self._texts = submitting.texts_for_retry(redis, self.record, given)
        job_admin.clear_for_retry(redis, self.id, todo)
        redis.hdel(jobstore.PREFIX + self.id, "submitted")
        self.send_chunks(sorted(todo))
        return len(todo) + given_back

    def _lost(self) -> set[int]:
        """Chunks sent that are nowhere (``tasks.jobs.lost``), once the submit is over."""
        redis = self.client.redis
        if redis.hget(jobstore.PREFIX + self.id, "submitted") is None:
            return set()  # still sending (or stalled: chunks_to_retry has those)

        def unfinished() -> set[int]:
            done, failed = jobstore.progress(redis, self.id)
            return set(range(self.record.total)) - set(done) - set(failed)

        connect = self.client.app.connection_for_write
        return set(lost.missing(redis, connect, self.id, queue_for(self.model), unfinished))

    def recorded_ids(self) -> list[str | None] | None:
        """The ids of the job's rows, from the input file the CLI recorded (or None)."""
        return submitting.recorded_ids(self.client.redis, self.record)

    def delete(self) -> int:
        """Drop the job's keys and chunk results from Redis now."""
        ttl_s = self.client.settings.result_ttl_s
        return job_admin.delete(self.client.redis, self.id, self.record.total, ttl_s=ttl_s)

    def status(self) -> dict[str, Any]:
        """``{"id","kind","model","version","alias","state","done","total","failed",
        "errors"}`` plus ``created``/``started``/``finished`` times, ``rows_done`` and
        ``eta_s``; ``model`` is the model that serves the job (an alias's resolved target)."""
        redis = self.client.redis
        record = (
            retry_while_unreachable(lambda: jobstore.load(redis, self.id), STATUS_RETRY_S)
            or self.record
        )
        done, failed = retry_while_unreachable(
            lambda: jobstore.progress(redis, self.id), STATUS_RETRY_S
        )
        state = jobstore.state_of(
            record.total, len(done), len(failed), record.cancelled, record.started
        )
        stalled = submitting.submit_stalled(redis, self.id, state)
        if stalled:
            state, failed = "FAILURE", {**failed, -1: stalled}
        return {
            "id": self.id,
            "kind": "list",
            "model": record.model,
            "version": record.version,
            "alias": record.alias or None,
            "state": state,
            "done": len(done),
            "total": record.total,
            "texts": record.n,
            "failed": len(failed),
            "errors": [{"chunk": i, "error": failed[i]} for i in sorted(failed)],
            "waiting_on_dead_worker": reclaim.lapsed_chunks(redis, self.id),
            "usage": usage.totals(redis, self.id),
            **retry_while_unreachable(
                lambda: progress.list_progress(redis, record, done, state), STATUS_RETRY_S
            ),
        }

    def wait(
        self,
        timeout: float | None = 600,
        progress: bool = False,
        allocate: Callable[[int, int], np.ndarray] | None = None,
        allow_failed: bool = False,
    ) -> np.ndarray:
        """Block until every chunk is done; return (n, dim) float32 in input order.

        With ``allow_failed``, a job whose chunks all finished returns what succeeded,
        the rows of failed chunks set to NaN; ``status()`` names those chunks.

        A ``long_text=windows`` job returns (m, dim): a vector per window, every input
        row's windows in order, rows in input order; :attr:`rows` (m int64) names the
        input row of each and :attr:`columns` holds ``window``, ``char_start``,
        ``char_end`` (the window's characters in its text), ``tokens`` and ``truncated``
        per window. A text that fits the model's window has one window (its whole
        text). With ``allow_failed`` a row not done has one NaN vector, window 0.

        Results are gathered as chunks finish, so memory holds the output once;
        ``allocate(n, dim)`` may return a memory-mapped array to stream to disk.
        Raises :class:`JobFailedError` when a chunk failed, ``TimeoutError`` on timeout.
        """
        gatherer = Gatherer(self.client.app, self.record, allocate, self.windows)
        total = self.record.total
        bar = bar_for(progress, total, "chunk", self.model, self.id)
        redis = self.client.redis
        with Poller(self.id, timeout, POLL_INTERVAL_S, bar=bar) as poller:
            while True:
                done, failed = retry_while_unreachable(lambda: jobstore.progress(redis, self.id))
                retry_while_unreachable(lambda done=done: gatherer.fetch(done))
                poller.show(len(gatherer.fetched))
                self.columns = gatherer.columns
                if len(gatherer.fetched) == total:
                    return self._gathered(gatherer, gatherer.array())
                if failed and len(done) + len(failed) >= total:
                    if allow_failed:
                        return self._gathered(gatherer, gatherer.array_with_gaps(failed))
                    raise JobFailedError(self.id, failed, total)
                if jobstore.is_cancelled(redis, self.id):
                    if allow_failed:  # what was done stays retrievable; the rest is NaN
                        gatherer.fetch(jobstore.progress(redis, self.id)[0])
                        missing = set(range(total)) - gatherer.fetched
                        return self._gathered(gatherer, gatherer.array_with_gaps(missing))
                    raise JobFailedError(self.id, {-1: "job was cancelled"}, total)
                poller.pause(len(done), total)

    def _gathered(self, gatherer: Gatherer, out: np.ndarray) -> np.ndarray:
        self.columns = gatherer.columns  # windows: assembled with ``out``
        return out

    def result(self, timeout: float | None = 600, progress: bool = False) -> np.ndarray:
        """The job's embeddings in input order (waits for chunks still running)."""
        return self.wait(timeout=timeout, progress=progress)

    def cancel(self) -> int:
        """Revoke chunks not yet started; returns how many were revoked. Done work stays."""
        redis = self.client.redis
        done, failed = jobstore.progress(redis, self.id)
        jobstore.mark_cancelled(redis, self.id)
        pending = [
            jobstore.chunk_task_id(self.id, i)
            for i in range(self.record.total)
            if i not in done and i not in failed
        ]
        if pending:
            self.client.app.control.revoke(pending)
        return len(pending)
