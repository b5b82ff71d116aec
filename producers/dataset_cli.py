"""The CLI verbs of dataset jobs: ``submit --output DEST/``, ``retry``, ``delete``, ``verify``, and
the OpenAI batch file round trip (``submit --format openai --output out.jsonl``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import producers.embed_options as embed_options
from producers import following
from producers.output import waiting_text
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
        raise_usage("a dataset job needs --output DEST/ (a folder or s3://bucket/prefix/)")
    if jsonl_out and not (openai_input(args) and output.endswith(".jsonl")):
        raise_usage(
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
        return 0
    with following.waiting(job):  # says so when no live worker serves the model
        if not (args.wait or jsonl_out):
            return 0
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
    return 0


def retry(args: argparse.Namespace, client: Any) -> int:
    job = client.job(args.job)
    sent = job.retry()
    print(f"job {args.job}: {sent} chunk(s) sent again")
    if args.wait and sent:
        with following.waiting(job):  # says so when no live worker serves the model
            job.wait(timeout=args.timeout, progress=sys.stderr.isatty())
    return 0


def delete(args: argparse.Namespace, client: Any) -> int:
    removed = client.job(args.job).delete()
    print(f"job {args.job}: deleted ({removed} key(s) freed)")
    return 0


def verify(args: argparse.Namespace) -> int:
    """``embedfleet verify DEST/``: one line a check; exit 0 when all pass, else 1."""
    import json

    from producers.verify import verify as run_verify

    report = run_verify(args.dest)
    print(json.dumps(report.as_dict()) if args.json else "\n".join(report.lines()))
    return 0 if report.ok else 1


def raise_usage(message: str) -> None:
    from producers.errors import UsageError

    raise UsageError(message)


def status_text(s: dict[str, Any]) -> str:
    def when(t: float | None) -> str:
        return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    eta = "-" if s.get("eta_s") is None else f"{s['eta_s']:.0f} s"
    lines = [
        f"job      {s['id']} (dataset)",
        f"model    {s['model']} ({s.get('version', '')})",
        f"state    {s['state']}",
        f"rows     {s['rows_done']}/{s['texts']} done, ETA {eta}",
        f"chunks   {s['done']}/{s['total']} done, {s['failed']} failed",
        f"created  {when(s['created'])}   started {when(s.get('started'))}   "
        f"finished {when(s['finished'])}",
        f"input    {s['input']}",
        f"output   {s['output']}",
    ]
    if s.get("output_problem"):
        lines.append(
            f"  the output no longer verifies: {s['output_problem']} "
            f"(`embedfleet verify {s['output']}` checks every row)"
        )
    for err in s["errors"]:
        rows = f" rows {err['rows'][0]}-{err['rows'][1]}" if "rows" in err else ""
        lines.append(f"  chunk {err['chunk']}{rows}: {err['error']}")
    lines += waiting_text(s)
    return "\n".join(lines)
