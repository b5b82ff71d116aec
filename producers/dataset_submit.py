"""Submitting a dataset job: plan the input, record the job, send the first window.

``submit_dataset`` is a scan (``tasks.io.scan``) plus a few Redis writes: the job id is
known (and announced) before the first chunk is sent, and the job finishes with no
producer alive (``tasks.jobs.datasets`` explains the window). What follows the job is
:class:`producers.dataset_job.DatasetJob`. See docs/DATASETS.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import producers.dataset_plan as dataset_plan
import producers.embed_options as embed_options
import producers.idempotency as idempotency
import producers.ownership as ownership
from producers.dataset_job import DatasetJob
from producers.errors import UsageError
from producers.job import JobClient
from tasks.contract.options import EmbedOptions
from tasks.contract.signing import key_of
from tasks.io import parts, pinning, scan, sources
from tasks.io.plan import DEFAULT_CHUNK_ROWS
from tasks.jobs import datasets, job_admin
from tasks.jobs.redis_retry import retry_while_unreachable


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
        return dry.for_dataset(client, model, version, plan, dest, options)
    if idempotency_key is not None:
        held = idempotency.existing_or_claim(
            client,
            idempotency_key,
            job_id,
            announce,
            (str(asked or model), version, idempotency.files_digest(files), dest),
            options,
            key=key,
            format=fmt,
            field=field,
            id_field=id_field,
            chunk_rows=chunk_rows,
            cache=cache,
        )
        if held is not None:
            return held
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
