"""The Python API: ``EmbeddingClient`` submits jobs and finds them again.

A job is found again by id from any process: its record (``tasks.jobs.jobstore``) and its
chunk results (the Celery result backend) live in Redis. What a job is lives in
``producers.job`` (the :class:`Job` protocol), ``producers.list_job`` and
``producers.dataset_job``; which model a job gets in ``producers.resolving``; asking the
running fleet in ``producers.fleet_admin``. ``submit`` and ``submit_dataset`` below are
the one place their parameters are spelled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from celery import Celery

import producers.embed_options as embed_options
import producers.fleet_admin as fleet_admin
import producers.idempotency as idempotency
import producers.resolving as resolving
from producers.dataset_job import DatasetJob
from producers.dataset_submit import submit_dataset
from producers.errors import InputError, JobNotFoundError
from producers.job import Job
from producers.list_job import POLL_INTERVAL_S, STATUS_RETRY_S, ListJob
from tasks.contract.chunking import budget_for, plan_chunks, plan_window
from tasks.contract.settings import Settings, process_settings
from tasks.contract.wire import MAX_CHARS_PER_TEXT
from tasks.io.readers import check_texts
from tasks.jobs import datasets, job_admin, jobstore
from tasks.jobs.redis_retry import retry_while_unreachable

__all__ = ["POLL_INTERVAL_S", "STATUS_RETRY_S", "EmbeddingClient", "Job", "ListJob"]

#: Texts one job may hold (split bigger inputs into several jobs).
MAX_TEXTS_PER_JOB = 10_000_000


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

        self.settings = settings or process_settings()
        # Settings given (or another URL): an app of their own; else the process's app.
        own = redis_url or settings is not None
        self.app: Celery = make_app(redis_url, self.settings) if own else default_app
        self.config_source = config_source

    @property
    def redis(self) -> Any:
        """The Redis client of the result backend (job records live there too)."""
        return self.app.backend.client

    # -- submitting: the one place the parameters of a submit are spelled ------------

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
        dry_run: bool = False,
        quantize: str | None = None,
        long_text: str | None = None,
        window_overlap: int | None = None,
    ) -> Any:
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
        first N dimensions, re-normalized when the model normalizes; ``quantize``
        (int8, uint8, binary, ubinary) returns vectors of that dtype; ``long_text``
        ``truncate`` (default), ``mean`` (the token-weighted mean of windows of the
        model's token window overlapping by ``window_overlap`` tokens, default 32) or
        ``windows`` (a vector per window: ``wait()`` returns (m, dim), every input row's
        windows in order, and ``job.rows`` the input row of each, ``job.columns`` its
        ``window``, ``char_start``, ``char_end``, ``tokens``; see ``ListJob.wait``).
        ``mean`` and ``windows`` need a model whose type has a tokenizer; others are
        refused naming the model.

        ``idempotency_key``: a submit retried with the same key and the same request gets
        the job the first one made, and queues nothing (``producers.idempotency``).
        ``dry_run``: plan and estimate only; returns a :class:`producers.dry_run.DryRun`.
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
            self,
            model,
            dimensions=dimensions,
            prompt_name=prompt_name,
            prompt=prompt,
            quantize=quantize,
            long_text=long_text,
            window_overlap=window_overlap,
        )
        texts = [t[:MAX_CHARS_PER_TEXT] for t in texts]
        if dry_run:
            import producers.dry_run as dry

            tokens, count = budget_for(self.seconds_per_text(model), len(texts))
            _, bounds = plan_chunks(
                texts,
                max_tokens=max_tokens or tokens,
                max_texts=max_texts or count,
                window=plan_window(options.long_text),
            )
            return dry.for_list(self, model, version, texts, bounds, options)
        if idempotency_key is not None:
            held = idempotency.existing_or_claim(
                self,
                idempotency_key,
                job_id,
                announce,
                (asked, version, idempotency.texts_digest(texts), ""),
                options,
                key=key,
                cache=cache,
                max_tokens=max_tokens,
                max_texts=max_texts,
            )
            if held is not None:
                return held
        if max_tokens is None or max_texts is None:
            tokens, count = budget_for(self.seconds_per_text(model), len(texts))
            max_tokens, max_texts = max_tokens or tokens, max_texts or count
        try:
            order, bounds = plan_chunks(
                texts, max_tokens, max_texts, window=plan_window(options.long_text)
            )
            record = retry_while_unreachable(
                lambda: jobstore.create(
                    self.redis,
                    job_id,
                    model,
                    version,
                    order,
                    bounds,
                    alias,
                    ttl_s=self.settings.result_ttl_s,
                )
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
        job = ListJob(self, record, texts)
        job.send_chunks(range(record.total), cache=cache)
        return job

    def submit_dataset(
        self, source: str, model: str | None, output: str, **options: Any
    ) -> DatasetJob:
        """Queue a dataset job: rows from ``source`` (file, folder, glob, ``s3://``), one
        parquet part per chunk into ``output`` (a folder or ``s3://`` prefix). The
        ``options`` are those of :func:`producers.dataset_submit.submit_dataset`; see
        docs/DATASETS.md."""
        return submit_dataset(self, source, model, output, **options)

    def verify(self, dest: str) -> Any:
        """Check a dataset job's output ``dest`` against its manifest: a
        :class:`producers.verify.VerifyReport` (``.ok``, ``.lines()``, ``.as_dict()``)."""
        from producers.verify import verify

        return verify(dest)

    def embed(self, texts: Sequence[str], model: str, timeout: float = 600) -> np.ndarray:
        """Submit and wait: the (n, dim) float32 embeddings of ``texts`` in input order."""
        return self.submit(texts, model).wait(timeout=timeout)

    # -- finding jobs again ---------------------------------------------------------

    def job(self, job_id: str) -> Job:
        """A job submitted earlier, by any process: a :class:`ListJob`, or a
        :class:`DatasetJob` for a dataset job (``job.kind`` says which)."""
        found = retry_while_unreachable(lambda: datasets.load(self.redis, job_id), STATUS_RETRY_S)
        if found is not None:
            return DatasetJob(self, found)
        record = retry_while_unreachable(lambda: jobstore.load(self.redis, job_id), STATUS_RETRY_S)
        if record is None:
            when = retry_while_unreachable(lambda: job_admin.deleted_at(self.redis, job_id))
            if when is not None:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
                raise JobNotFoundError(f"job {job_id!r} was deleted at {stamp}")
            raise JobNotFoundError(f"no job {job_id!r} (never submitted, or expired)")
        return ListJob(self, record)

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Status of the most recent jobs, newest first."""
        rows = []
        for job_id in jobstore.recent(self.redis, limit):
            try:
                rows.append(self.job(job_id).status())
            except JobNotFoundError:
                continue
        return rows

    # -- which model a job gets -----------------------------------------------------

    def resolve_model(self, model: str, key: str) -> tuple[str, str, str]:
        """``(model, alias, version)`` of a job for ``model`` (a model or an A/B alias),
        from the fleet's publication unless this client was given a ``config_source``
        (see :func:`producers.resolving.resolve_model`)."""
        return resolving.resolve_model(
            self.redis, model, key, self.config_source, self.settings.config_source
        )

    def quantize(self, vectors: Any, model: str, precision: str = "int8") -> np.ndarray:
        """``vectors`` computed elsewhere with ``model`` in ``precision`` exactly as the
        fleet quantizes a job's (int8/uint8: the ranges fixed for the model's version;
        see ``producers.embed_options.quantize``)."""
        return embed_options.quantize(self, vectors, model, precision)

    def seconds_per_text(self, model: str) -> float | None:
        """What one text costs ``model`` in the fleet, as its workers publish it (None when
        unknown, or when this client reads a local config)."""
        if self.config_source is not None:
            return None
        return resolving.seconds_per_text(self.redis, model)

    # -- the running fleet (producers.fleet_admin) ----------------------------------

    def models(
        self, timeout: float = 3.0, destination: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Per worker: config hash, budget, RSS and its models (loaded, RAM, hits);
        ``destination``: only the named workers, returning once each answered (by
        default, the workers the fleet's catalog lists as live: see
        :func:`producers.fleet_admin.models`)."""
        return fleet_admin.models(self.app, timeout, destination or self._live_workers() or None)

    def reload(
        self,
        timeout: float = 10.0,
        destination: list[str] | None = None,
        allow_empty: bool = False,
    ) -> list[dict[str, Any]]:
        """Broadcast ``reload_models`` to every worker (or the ``destination`` ones); one
        row per worker (see :func:`producers.fleet_admin.reload`)."""
        live = None if destination else self._live_workers()
        return fleet_admin.reload(self.app, timeout, destination, allow_empty, live)

    def _live_workers(self) -> list[str]:
        """The workers the fleet's catalog lists as live (tasks.contract.catalog)."""
        from tasks.contract.catalog import live_workers

        return retry_while_unreachable(lambda: live_workers(self.redis)) or []

    def workers(self, timeout: float = 1.0) -> list[str]:
        """Names of the workers that answer a ping."""
        return fleet_admin.workers(self.app, timeout)
