"""The CLI's job verbs, list and dataset jobs alike: ``submit``, ``status``, ``result``,
``retry``, ``cancel``, ``delete``, ``jobs`` and ``verify``.

Each takes the parsed arguments (``producers.cli`` builds the parser) and returns an exit
code. A dataset job's submit is in ``producers.cli_datasets``. Heavy imports stay inside
the functions, so that ``embedfleet --help`` stays quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

import producers.embed_options as embed_options
from producers import following, output
from producers.errors import EXIT_FAILED, EXIT_OK, JobFailedError, UsageError

if TYPE_CHECKING:
    from producers.client import EmbeddingClient
    from producers.dataset_job import DatasetJob


def client() -> EmbeddingClient:
    """The client a verb uses: configured from this process's settings."""
    from producers.client import EmbeddingClient

    return EmbeddingClient()


def submit(args: argparse.Namespace) -> int:
    from producers import cli_datasets
    from producers.writers import check_writable
    from tasks.io.readers import read_rows

    if cli_datasets.is_dataset(args):
        return cli_datasets.submit(args, client())
    if not args.model:
        raise UsageError("--model is required")
    out = check_writable(args.output) if args.output else None  # before the job is queued
    rows = read_rows(args.input, args.field, args.id_field) if args.input else None
    texts = rows.texts if rows is not None else args.text
    job = client().submit(
        texts,
        model=args.model,
        key=args.key,
        cache=not args.no_cache,
        # scripts read the id before the first chunk is sent
        announce=lambda job_id: print(job_id, flush=True),
        source=(os.path.abspath(args.input), args.field) if args.input else None,
        **embed_options.from_args(args),
        idempotency_key=args.idempotency_key,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print(job.dumps() if args.json else job.text())
        return EXIT_OK
    progress = sys.stderr.isatty() or args.wait
    with following.waiting(job):  # says so when no live worker serves the model
        if out is not None:
            ids = rows.ids if rows is not None else None
            wrote = output.write_job(job, out, timeout=args.timeout, progress=progress, ids=ids)
            print(wrote, file=sys.stderr)
        elif args.wait:
            job.wait(timeout=args.timeout, progress=progress)
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    found = client().job(args.job).status()
    if found.get("kind") == "dataset":
        text = output.dataset_status_text(found)
    else:
        text = output.status_text(found)
    print(json.dumps(found) if args.json else text)
    broken = found["state"] == "FAILURE" or found.get("output_problem")
    return EXIT_FAILED if broken else EXIT_OK


def result(args: argparse.Namespace) -> int:
    from producers.writers import check_writable

    path = check_writable(args.output)  # before anything is fetched
    from producers.dataset_job import DatasetJob
    from producers.list_job import ListJob
    from tasks.jobs.jobstore import is_cancelled

    job = client().job(args.job)
    if isinstance(job, DatasetJob):
        return _dataset_result(job, args)
    assert isinstance(job, ListJob)  # the two kinds of job
    # Rows of failed chunks would be NaN: only with --partial (else exit 1); a cancelled
    # job is written as it is, what was not done NaN (README: automatic)
    cancelled = bool(is_cancelled(job.client.redis, job.id))
    partial = bool(args.partial) or cancelled
    ids = job.recorded_ids() if path.suffix.lower() != ".npy" else None
    try:
        wrote = output.write_job(
            job, path, timeout=args.timeout, progress=True, allow_failed=partial, ids=ids
        )
    except JobFailedError as exc:
        print(f"embedfleet: {exc} (--partial writes the rest, those rows NaN)", file=sys.stderr)
        return EXIT_FAILED
    if cancelled:
        print(f"job {job.id} was cancelled: rows of chunks not done are NaN", file=sys.stderr)
    elif partial:
        print("rows of chunks that failed or were cancelled are NaN", file=sys.stderr)
    print(wrote, file=sys.stderr)
    if args.delete:
        job.delete()
    return EXIT_OK


def _dataset_result(job: DatasetJob, args: argparse.Namespace) -> int:
    """A dataset job's vectors are its parts; an OpenAI job also writes a .jsonl file."""
    if job.record.spec.get("format") != "openai" or not args.output.endswith(".jsonl"):
        raise UsageError(
            f"job {job.id} is a dataset job: its embeddings are the parquet parts in "
            f"{job.output} (an OpenAI batch job can also be written as a .jsonl file)"
        )
    from producers.openai_output import write_openai_output

    job.wait(timeout=args.timeout)
    lines = write_openai_output(job, args.output)
    print(f"wrote {lines} responses to {args.output}", file=sys.stderr)
    if args.delete:
        job.delete()
    return EXIT_OK


def retry(args: argparse.Namespace) -> int:
    job = client().job(args.job)
    sent = job.retry()
    print(f"job {args.job}: {sent} chunk(s) sent again")
    if args.wait and sent:
        with following.waiting(job):  # says so when no live worker serves the model
            job.wait(timeout=args.timeout, progress=sys.stderr.isatty())
    return EXIT_OK


def cancel(args: argparse.Namespace) -> int:
    revoked = client().job(args.job).cancel()
    print(f"job {args.job}: cancelled, {revoked} chunk(s) not yet done were revoked")
    return EXIT_OK


def delete(args: argparse.Namespace) -> int:
    removed = client().job(args.job).delete()
    print(f"job {args.job}: deleted ({removed} key(s) freed)")
    return EXIT_OK


def jobs(args: argparse.Namespace) -> int:
    rows = client().jobs(limit=args.limit)
    print(json.dumps(rows) if args.json else output.jobs_text(rows))
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    """``embedfleet verify DEST/``: one line a check; exit 0 when all pass, else 1."""
    from producers.verify import verify as run_verify

    report = run_verify(args.dest)
    print(json.dumps(report.as_dict()) if args.json else "\n".join(report.lines()))
    return EXIT_OK if report.ok else EXIT_FAILED
