"""``embedfleet submit`` for a dataset job: which inputs make one (``is_dataset``), the
submit itself (``--output DEST/``), and the OpenAI batch file round trip (``submit
--format openai --output out.jsonl``). The verbs both kinds share are in
``producers.cli_jobs``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import producers.embed_options as embed_options
from producers import following
from producers.errors import EXIT_OK, UsageError
from tasks.io import parts


def is_dataset(args: argparse.Namespace) -> bool:
    """A dataset job: the output is a folder or S3 prefix, the input is a folder, glob or
    S3 URL, or the input is an OpenAI batch file."""
    if not args.input:
        return False
    if args.output and parts.is_folder_target(args.output):
        return True
    if args.input.startswith("s3://") or Path(args.input).is_dir() or "*" in args.input:
        return True
    return openai_input(args)


def openai_input(args: argparse.Namespace) -> bool:
    if args.format == "openai":
        return True
    if args.format not in (None, "auto") or not args.input.endswith(".jsonl"):
        return False
    from tasks.io import openai, scan, sources

    try:
        first = sources.resolve(args.input)[0]
        return openai.looks_like_openai(scan.first_line(first.url, first.size))
    except Exception:
        return False  # the list path names the problem


def submit(args: argparse.Namespace, client: Any) -> int:
    output = args.output
    jsonl_out = output is not None and not parts.is_folder_target(output)
    if output is None:
        raise UsageError("a dataset job needs --output DEST/ (a folder or s3://bucket/prefix/)")
    if jsonl_out and not (openai_input(args) and output.endswith(".jsonl")):
        raise UsageError(
            f"{output}: a dataset job writes parquet parts to a folder: end the "
            f"path with '/' (an OpenAI batch input may write a .jsonl file)"
        )
    dest = output + ".parts/" if jsonl_out else output
    job = client.submit_dataset(
        args.input,
        args.model,
        dest,
        fmt=args.format,
        field=args.field,
        id_field=args.id_field,
        key=args.key,
        cache=args.cache,
        chunk_rows=args.chunk_rows,
        window=args.window,
        announce=lambda job_id: print(job_id, flush=True),
        overwrite=args.overwrite,
        **embed_options.from_args(args),
        idempotency_key=args.idempotency_key,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print(job.dumps() if args.json else job.text())
        return EXIT_OK
    with following.waiting(job):  # says so when no live worker serves the model
        if not (args.wait or jsonl_out):
            return EXIT_OK
        progress = sys.stderr.isatty() or args.wait
        job.wait(timeout=args.timeout, progress=progress)
    if jsonl_out:
        from producers.openai_output import write_openai_output

        lines = write_openai_output(job, output)
        print(f"wrote {lines} responses to {output}", file=sys.stderr)
    else:
        print(
            f"wrote {job.record.n} rows in {job.record.total} parts to {job.output}",
            file=sys.stderr,
        )
    return EXIT_OK
