"""The Python API: ``EmbeddingClient`` submits jobs, ``Job`` follows and gathers them.

A job is found again by id from any process: its record (``tasks.jobs.jobstore``) and its
chunk results (the Celery result backend) live in Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from celery import Celery
from redis.exceptions import RedisError

import producers.embed_options as embed_options
import producers.idempotency as idempotency
from producers.errors import InputError, JobFailedError, JobNotFoundError, UnknownModelError
from producers.gather import Gatherer, poll_delays
from tasks.contract import catalog as fleet_catalog
from tasks.contract.chunking import budget_for, plan_chunks
from tasks.contract.settings import Settings, load_settings
from tasks.contract.spec import read_local_config, spec_version
from tasks.contract.wire import MAX_CHARS_PER_TEXT
from tasks.io.readers import check_texts
from tasks.jobs import jobstore
from tasks.jobs.redis_retry import REDIS_RETRY_S, retry_while_unreachable

#: Seconds between progress polls while waiting for a job, at most: polls start at
#: ``producers.gather.FIRST_POLL_S`` and grow up to this.
POLL_INTERVAL_S = 0.1
#: Texts one job may hold (split bigger inputs into several jobs).
MAX_TEXTS_PER_JOB = 10_000_000
#: Seconds a one-shot read (``job``, ``status``) retries before it reports Redis down:
#: the same window as every other call (README: "Producers retry while Redis restarts").
STATUS_RETRY_S = REDIS_RETRY_S


class EmbeddingClient:
    """Submit embedding jobs to the fleet and find them again.

    ``EmbeddingClient()`` is configured from the environment (``EMBEDFLEET_REDIS_URL``,
    ``EMBEDFLEET_MODEL_CONFIG``); ``redis_url`` / ``config_source`` override them.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        config_source: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        from tasks.app import app as default_app
        from tasks.app import make_app

        self.settings = settings or load_settings()
        self.app: Celery = make_app(redis_url, self.settings) if redis_url else default_app
        self.config_source = config_source

    @property
    def redis(self) -> Any:
        """The Redis client of the result backend (job records live there too)."""
        return self.app.backend.client

    def resolve_model(self, model: str, key: str) -> tuple[str, str, str]:
        """``(model, alias, version)`` of a job for ``model`` (a model or an A/B alias).

        From the fleet's own publication (``tasks.contract.catalog``) unless this client was given
        a ``config_source``; a local ``EMBEDFLEET_MODEL_CONFIG``, when set, is consulted
        only for a model the fleet does not publish (e.g. no worker has started yet).
        ``key`` picks an alias's target.
        """
        local = self.config_source
        if local is None:
            catalog = retry_while_unreachable(lambda: fleet_catalog.read(self.redis))
            local = self.settings.config_source
            known = model in catalog.models or model in catalog.aliases
            if known or model in catalog.errors or not local:
                if catalog.empty:
                    raise UnknownModelError(
                        "no worker has published the models it serves to this Redis yet: "
                        "start one (`embedfleet worker` or `embedfleet up`), or name a config "
                        "with EMBEDFLEET_MODEL_CONFIG"
                    )
                return _resolve_in_catalog(catalog, model, key)
        config = read_local_config(local)
        alias = ""
        if model in config.aliases:
            alias, model = model, config.aliases[model].pick(key)
        spec = config.get(model)
        if spec is None:
            known = ", ".join(sorted([*config, *config.aliases])) or "none"
            why = f" ({config.errors[model]})" if model in config.errors else ""
            raise UnknownModelError(f"unknown model {model!r}{why}; configured: {known}")
        return model, alias, spec_version(spec)

    def submit(
        self,
        texts: Sequence[str],
        model: str,
        max_tokens: int | None = None,
        max_texts: int | None = None,
        key: str | None = None,
        cache: bool = True,
        announce: Callable[[str], None] | None = None,
        source: tuple[str, str | None] | None = None,
        dimensions: int | None = None,
        idempotency_key: str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> Job:
        """Queue ``texts`` for ``model``; returns the job (its chunks run in the fleet).

        ``model`` may be an A/B alias: the job gets one of its targets, chosen from
        ``key`` (e.g. a user or tenant id) or else the job id, so the same key always
        gets the same target. The job is pinned to the version of the model it resolved
        now. ``cache=False`` bypasses the fleet-wide embedding cache. ``announce(job_id)``
        runs once the job is recorded, before its first chunk is sent; ``source`` (path,
        field) lets ``retry`` re-read chunks the submit could not send. ``max_tokens`` /
        ``max_texts`` bound a chunk; by default they follow the model's cost per text as
        its workers publish it (``tasks.contract.chunking.budget_for``).
        Embedding options (``tasks.contract.options``): ``prompt_name`` (one the model
        declares; refused otherwise) or a literal ``prompt``; ``dimensions=N`` keeps the
        first N dimensions, re-normalized when the model normalizes.

        ``idempotency_key``: a submit retried with the same key and the same request gets
        the job the first one made, and queues nothing (``producers.idempotency``).
        """
        texts = check_texts(list(texts) if not isinstance(texts, str) else texts)
        if len(texts) > MAX_TEXTS_PER_JOB:
            raise InputError(
                f"{len(texts)} texts in one job; the limit is {MAX_TEXTS_PER_JOB}: split the input"
            )
        job_id = uuid.uuid4().hex
        asked = model
        if idempotency_key is not None:
            idempotency.check_key(idempotency_key)
        model, alias, version = self.resolve_model(model, key or idempotency_key or job_id)
        options = embed_options.options_for(
            self, model, dimensions=dimensions, prompt_name=prompt_name, prompt=prompt
        )
        texts = [t[:MAX_CHARS_PER_TEXT] for t in texts]
        if idempotency_key is not None:
            wanted = idempotency.digest(
                asked,
                version,
                idempotency.texts_digest(texts),
                "",
                {
                    "key": key,
                    "cache": cache,
                    "max_tokens": max_tokens,
                    "max_texts": max_texts,
                    "embed": options.to_wire(),
                },
            )
            held = idempotency.claim(self, idempotency_key, job_id, wanted)
            if held is not None:
                return idempotency.existing_job(self, held, announce)  # type: ignore[no-any-return]
        if max_tokens is None or max_texts is None:
            tokens, count = budget_for(self.seconds_per_text(model), len(texts))
            max_tokens, max_texts = max_tokens or tokens, max_texts or count
        try:
            order, bounds = plan_chunks(texts, max_tokens=max_tokens, max_texts=max_texts)
            record = retry_while_unreachable(
                lambda: jobstore.create(self.redis, job_id, model, version, order, bounds, alias)
            )
        except BaseException:
            if idempotency_key is not None:
                idempotency.release(self, idempotency_key, job_id)
            raise
        if idempotency_key is not None:
            idempotency.attach(self, idempotency_key, job_id)
        embed_options.record(self, job_id, options)
        if source is not None:  # `retry` re-reads the file for chunks that were never sent
            retry_while_unreachable(
                lambda: self.redis.hset(
                    jobstore.PREFIX + job_id, mapping={"input": source[0], "field": source[1] or ""}
                )
            )
        if announce is not None:
            announce(job_id)
        job = Job(self, record, texts)
        job.send_chunks(range(record.total), cache=cache)
        return job

    def seconds_per_text(self, model: str) -> float | None:
        """What one text costs ``model`` in the fleet, as its workers publish it (None when
        unknown, or when this client reads a local config)."""
        if self.config_source is not None:
            return None
        try:
            served = fleet_catalog.read(self.redis).models.get(model)
        except RedisError:  # sizing is an optimisation: the defaults serve
            return None
        return served.seconds_per_text if served is not None else None

    def submit_dataset(self, source: str, model: str | None, output: str, **options: Any) -> Any:
        """Queue a dataset job: rows from ``source`` (file, folder, glob, ``s3://``), one
        parquet part per chunk into ``output`` (a folder or ``s3://`` prefix); returns a
        :class:`producers.datasets.DatasetJob`. See docs/DATASETS.md for ``options``."""
        from producers.datasets import submit_dataset

        return submit_dataset(self, source, model, output, **options)

    def job(self, job_id: str) -> Any:
        """A job submitted earlier, by any process (a :class:`Job`, or a
        :class:`producers.datasets.DatasetJob` for a dataset job)."""
        from tasks.jobs import datasets

        found = retry_while_unreachable(lambda: datasets.load(self.redis, job_id), STATUS_RETRY_S)
        if found is not None:
            from producers.datasets import DatasetJob

            return DatasetJob(self, found)
        record = retry_while_unreachable(lambda: jobstore.load(self.redis, job_id), STATUS_RETRY_S)
        if record is None:
            from tasks.jobs.job_admin import deleted_at

            when = retry_while_unreachable(lambda: deleted_at(self.redis, job_id))
            if when is not None:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
                raise JobNotFoundError(f"job {job_id!r} was deleted at {stamp}")
            raise JobNotFoundError(f"no job {job_id!r} (never submitted, or expired)")
        return Job(self, record)

    def embed(self, texts: Sequence[str], model: str, timeout: float = 600) -> np.ndarray:
        """Submit and wait: the (n, dim) float32 embeddings of ``texts`` in input order."""
        return self.submit(texts, model).wait(timeout=timeout)

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Status of the most recent jobs, newest first."""
        rows = []
        for job_id in jobstore.recent(self.redis, limit):
            try:
                rows.append(self.job(job_id).status())
            except JobNotFoundError:
                continue
        return rows

    def models(self, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Per worker: config hash, budget, RSS and its models (loaded, RAM, hits)."""
        replies = retry_while_unreachable(
            lambda: self.app.control.broadcast("embedfleet_models", reply=True, timeout=timeout)
        )
        rows = []
        for reply in replies or []:
            for worker, body in reply.items():
                rows.append({"worker": worker, **body})
        return sorted(rows, key=lambda r: r["worker"])

    def reload(
        self,
        timeout: float = 10.0,
        destination: list[str] | None = None,
        allow_empty: bool = False,
    ) -> list[dict[str, Any]]:
        """Broadcast ``reload_models``: every worker re-reads its config and applies it.

        A config without any model is refused (``ok: false``) unless ``allow_empty``.

        Returns one row per worker: ``{"worker","ok","config_hash","added","removed",
        "changed","error"}``. ``destination`` limits it to the named workers.
        Redis broadcasts are fire-and-forget: a worker that is down
        misses it, and loads the current config when it starts.
        """
        expected = len(destination) if destination else len(self.workers())
        replies = retry_while_unreachable(
            lambda: self.app.control.broadcast(
                "reload_models",
                arguments={"allow_empty": True} if allow_empty else None,
                reply=True,
                timeout=timeout,
                limit=expected or None,
                destination=destination,
            )
        )
        empty = {"ok": False, "config_hash": None, "added": [], "removed": [], "changed": []}
        rows = [
            {"worker": worker, **empty, "error": None, **body}
            for reply in replies or []
            for worker, body in reply.items()
        ]
        return sorted(rows, key=lambda r: r["worker"])

    def workers(self, timeout: float = 1.0) -> list[str]:
        """Names of the workers that answer a ping."""
        replies = retry_while_unreachable(lambda: self.app.control.ping(timeout=timeout)) or []
        return sorted(name for reply in replies for name in reply)


class Job:
    """A submitted job: follow it with :meth:`status`, gather it with :meth:`wait`."""

    kind = "list"

    def __init__(
        self,
        client: EmbeddingClient,
        record: jobstore.JobRecord,
        texts: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        self.record = record
        self.id = record.id
        self.model = record.model
        self._texts = texts  # kept by the submitting process, for retry

    def send_chunks(self, indices: Any, cache: bool = True) -> None:
        """Send chunks ``indices``, retrying while Redis is unreachable; when it stays
        down, the chunks not sent are recorded as failed with the reason (``retry``
        sends them again) and :class:`UsageError` says so."""
        from producers.submitting import send_list_chunks

        send_list_chunks(self, list(indices), cache)

    def retry(self, texts: Sequence[str] | None = None) -> int:
        """Send again the chunks that failed (or were never sent); returns how many.
        Texts come from ``texts``, the submitting process, or the input file recorded."""
        from producers.submitting import retry_list_job

        return retry_list_job(self, texts)

    def delete(self) -> int:
        """Drop the job's keys and chunk results from Redis now."""
        from tasks.jobs import job_admin

        return job_admin.delete(self.client.redis, self.id, self.record.total)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, model={self.model!r}, texts={self.record.n})"

    def status(self) -> dict[str, Any]:
        """``{"id","model","version","alias","state","done","total","failed","errors"}``;
        ``model`` is the model that serves the job (an alias's resolved target)."""
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
        from producers.submitting import submit_stalled
        from tasks.jobs import reclaim  # reads the settings: not at CLI import time

        stalled = submit_stalled(redis, self.id, state)
        if stalled:
            state, failed = "FAILURE", {**failed, -1: stalled}
        return {
            "id": self.id,
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

        Results are gathered as chunks finish, so memory holds the output once;
        ``allocate(n, dim)`` may return a memory-mapped array to stream to disk.
        Raises :class:`JobFailedError` when a chunk failed, ``TimeoutError`` on timeout.
        """
        gatherer = Gatherer(self.client.app, self.record, allocate=allocate)
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _progress_bar(self.record, progress)
        delays = poll_delays(POLL_INTERVAL_S)
        try:
            while True:
                done, failed = retry_while_unreachable(
                    lambda: jobstore.progress(self.client.redis, self.id)
                )
                fetched = retry_while_unreachable(lambda done=done: gatherer.fetch(done))
                if bar is not None and fetched:
                    bar.update(fetched)
                if len(gatherer.fetched) == self.record.total:
                    return gatherer.array()
                if failed and len(done) + len(failed) >= self.record.total:
                    if allow_failed:
                        return gatherer.array_with_gaps(failed)
                    raise JobFailedError(self.id, failed, self.record.total)
                if jobstore.is_cancelled(self.client.redis, self.id):
                    if allow_failed:  # what was done stays retrievable; the rest is NaN
                        gatherer.fetch(jobstore.progress(self.client.redis, self.id)[0])
                        missing = set(range(self.record.total)) - gatherer.fetched
                        return gatherer.array_with_gaps(missing)
                    raise JobFailedError(self.id, {-1: "job was cancelled"}, self.record.total)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"job {self.id}: {len(done)} of {self.record.total} chunks done "
                        f"after {timeout} s"
                    )
                time.sleep(next(delays))
        finally:
            if bar is not None:
                bar.close()

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


def _resolve_in_catalog(
    catalog: fleet_catalog.Catalog, model: str, key: str
) -> tuple[str, str, str]:
    alias = ""
    if model in catalog.aliases:
        alias, model = model, catalog.aliases[model].pick(key)
    served = catalog.models.get(model)
    if served is None and model in catalog.errors:
        raise UnknownModelError(
            f"model {model!r} is refused by the fleet's workers: {catalog.errors[model]}"
        )
    if served is None:
        known = ", ".join(catalog.names()) or "none"
        why = f" ({catalog.errors[model]})" if model in catalog.errors else ""
        raise UnknownModelError(f"unknown model {model!r}{why}; the fleet serves: {known}")
    return model, alias, served.version


def _progress_bar(record: jobstore.JobRecord, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=record.total, unit="chunk", desc=f"{record.model} {record.id[:8]}")
