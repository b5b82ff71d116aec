"""The ``embedfleet`` command line. Exit codes: 0 ok, 1 job failed, 2 usage or config error."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

import producers.embed_options as embed_options
from producers import following, output
from producers.errors import JobFailedError, UsageError
from tasks.contract.errors import EmbedfleetError

if TYPE_CHECKING:  # imported where used, so that `embedfleet --help` stays quick
    from producers.client import EmbeddingClient
    from producers.datasets import DatasetJob

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from tasks.contract.logs import configure_logging
    from tasks.contract.settings import load_settings, use_settings

    try:
        # Every EMBEDFLEET_* variable, read and checked once: a bad one is exit 2 here.
        args.settings = use_settings(load_settings())  # this process's, handed down
        configure_logging(args.settings.log_level, json_lines=args.settings.log_json)
        from celeryconfig import url_problem

        problem = url_problem(args.settings.redis_url)
        if problem:
            print(f"embedfleet: {problem}", file=sys.stderr)
            return EXIT_USAGE
        return int(args.func(args) or EXIT_OK)
    except JobFailedError as exc:
        print(f"embedfleet: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError as exc:
        print(f"embedfleet: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (UsageError, EmbedfleetError) as exc:
        print(f"embedfleet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RedisError, OperationalError, ConnectionError) as exc:
        from producers.fleet import describe_url
        from tasks.jobs.redis_full import is_redis_full

        if is_redis_full(exc):
            print(
                f"embedfleet: Redis at {describe_url()} is out of memory (used memory above "
                f"its maxmemory) and refused a write: free memory or raise maxmemory",
                file=sys.stderr,
            )
            return EXIT_USAGE

        print(f"embedfleet: cannot reach Redis at {describe_url()}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a file that cannot be read or written (never Redis: above)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"embedfleet: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="embedfleet", description=__doc__)
    sub = p.add_subparsers(metavar="COMMAND")

    def cmd(name: str, func: Callable[[argparse.Namespace], int | None], help: str) -> Any:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    sp = cmd("up", _up, "start the local fleet in the background (embedded server if needed)")
    sp.add_argument("--workers", type=int, default=1, help="worker processes to start (default 1)")
    sp.add_argument("--flower", action="store_true", help="also start Flower")
    sp.add_argument("--flower-port", type=int, default=5555, help="Flower's port (default 5555)")
    sp.add_argument(
        "--flower-auth",
        default=os.environ.get("FLOWER_BASIC_AUTH"),
        help="user:password for Flower's basic auth (default: $FLOWER_BASIC_AUTH)",
    )
    sp.add_argument(
        "--models", default="all", help="models the workers serve: comma-separated, or all"
    )
    cmd("down", _down, "stop what `embedfleet up` started")

    sp = cmd("worker", _worker, "run one worker in the foreground")
    sp.add_argument("--models", default="all", help="comma-separated model names, or 'all'")
    sp.add_argument(
        "--concurrency", type=int, default=1, help="chunks run at once (pool threads; default 1)"
    )
    sp.add_argument("--name", default=None, help="worker node name (default embedfleet@%%h)")
    sp.add_argument("--loglevel", default="INFO", help="log level (default INFO)")

    sp = cmd("serve", _serve, "the OpenAI-compatible HTTP gateway (embeddings, files, batches)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    sp.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without API keys (only on a loopback address)",
    )

    sp = cmd("submit", _submit, "submit an embedding job")
    sp.add_argument("--model", help="model or alias (OpenAI batch input: body.model)")
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--input", help="a .jsonl/.csv/.parquet/.txt file, a folder, a glob or s3:// URL"
    )
    src.add_argument("--text", nargs="+", help="texts given on the command line")
    sp.add_argument("--field", help="field or column holding the text (default: text)")
    sp.add_argument(
        "--output",
        help="a file (.npy, .parquet, .jsonl), or DEST/ or s3://bucket/prefix/ for a "
        "dataset job (one parquet part per chunk, see docs/DATASETS.md)",
    )
    sp.add_argument("--format", help="input format: jsonl, csv, parquet, txt or openai")
    sp.add_argument("--id-field", help="field carried as `id` (default: id or custom_id)")
    sp.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="dataset job: rows a part (default: sized to the job and the live workers, "
        "see docs/DATASETS.md)",
    )
    sp.add_argument("--window", type=int, default=16, help="dataset job: chunks in flight")
    sp.add_argument("--cache", action="store_true", help="dataset job: use the embedding cache")
    sp.add_argument(
        "--overwrite",
        action="store_true",
        help="dataset job: remove the parts and manifest DEST/ holds first (else refused)",
    )
    sp.add_argument("--wait", action="store_true", help="wait with a progress bar")
    sp.add_argument("--key", help="A/B aliases: the same key always gets the same target")
    sp.add_argument("--no-cache", action="store_true", help="bypass the embedding cache")
    sp.add_argument(
        "--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)"
    )
    sp.add_argument(
        "--dry-run",
        action="store_true",
        help="plan and estimate (rows, chunks, tokens, duration, output size); queue nothing",
    )
    sp.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    sp.add_argument(
        "--idempotency-key",
        help="a retried submit with this key and the same request gets the job the first "
        "made, and queues nothing (e.g. the orchestrator's run id); another request under "
        "the key is refused",
    )
    embed_options.add_arguments(sp)

    sp = cmd("status", _status, "state of a job: chunks done/total, failures")
    sp.add_argument("job")
    sp.add_argument("--json", action="store_true", help="print the status as JSON")

    sp = cmd("result", _result, "write a job's embeddings in input order")
    sp.add_argument("job")
    sp.add_argument(
        "--partial", action="store_true", help="write what succeeded; failed chunks' rows NaN"
    )
    sp.add_argument("--output", required=True, help="a .npy, .parquet or .jsonl file")
    sp.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for chunks still running"
    )
    sp.add_argument("--delete", action="store_true", help="free the job's keys once written")

    sp = cmd("retry", _retry, "re-run only a job's failed or missing chunks")
    sp.add_argument("job")
    sp.add_argument("--wait", action="store_true", help="wait for the chunks sent again")
    sp.add_argument(
        "--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)"
    )

    sp = cmd("delete", _delete, "free a job's keys in Redis now")
    sp.add_argument("job")

    sp = cmd("verify", _verify, "check a dataset job's output folder against its manifest")
    sp.add_argument("dest", help="DEST/ or s3://bucket/prefix/")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")

    sp = cmd("jobs", _jobs, "recent jobs with state and progress")
    sp.add_argument("--json", action="store_true", help="print the jobs as JSON")
    sp.add_argument("--limit", type=int, default=20, help="jobs shown, newest first (default 20)")

    sp = cmd("cancel", _cancel, "revoke a job's chunks not yet started")
    sp.add_argument("job")

    sp = cmd("reload", _reload, "broadcast: every worker re-reads its model config")
    sp.add_argument("--json", action="store_true", help="print the replies as JSON")
    sp.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for replies (default 10)"
    )
    sp.add_argument("--worker", action="append", help="only this worker (repeatable)")
    sp.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a config without any model (workers then serve nothing)",
    )

    sp = cmd("models", _models, "per worker: models configured/loaded, RAM, hits")
    sp.add_argument("--json", action="store_true", help="print the rows as JSON")

    sp = cmd("compare", _compare, "how far two models agree on a sample of texts")
    sp.add_argument("model_a")
    sp.add_argument("model_b")
    sp.add_argument(
        "--input", required=True, help="texts to compare on (a .jsonl/.csv/.parquet/.txt file)"
    )
    sp.add_argument("--field", help="field or column holding the text (default: text)")
    sp.add_argument("--sample", type=int, default=500, help="texts taken from the input")
    sp.add_argument("-k", type=int, default=10, help="neighbours compared per text")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")

    sp = cmd("optimize", _optimize, "export, quantize, gate, benchmark and register a model")
    from workers.optimize.cli import add_arguments as optimize_arguments

    optimize_arguments(sp)

    sp = cmd("demo", _demo, "the main job end to end on the embedded default")
    sp.add_argument("--input", default=None, help="texts to embed (default: the sample file)")
    sp.add_argument("--model", default="all-MiniLM-L6-v2", help="model to embed with")
    sp.add_argument(
        "--output", default="out/demo.npy", help="where the vectors go (default out/demo.npy)"
    )
    return p


def _client() -> EmbeddingClient:
    from producers.client import EmbeddingClient

    return EmbeddingClient()


def _up(args: argparse.Namespace) -> int:
    from producers import fleet

    started = fleet.up(
        workers=args.workers,
        flower=args.flower,
        models=args.models,
        flower_port=args.flower_port,
        flower_auth=args.flower_auth,
    )
    from producers.fleet_report import up_text

    print(up_text(started, args.flower_port))
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    from producers import fleet
    from producers.fleet_report import down_note

    note = down_note()
    if note:
        print(f"embedfleet: {note}", file=sys.stderr)
    stopped = fleet.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from workers.serving.main import run_worker

    return run_worker(args.models, args.concurrency, args.name, args.loglevel, args.settings)


def _serve(args: argparse.Namespace) -> int:
    from gateway.serve import run_gateway

    return run_gateway(args.settings, args.host, args.port, args.no_auth)


def _submit(args: argparse.Namespace) -> int:
    from producers import dataset_cli
    from producers.writers import check_writable
    from tasks.io.readers import read_rows

    if dataset_cli.is_dataset(args):
        return dataset_cli.submit(args, _client())
    if not args.model:
        raise UsageError("--model is required")
    out = check_writable(args.output) if args.output else None  # before the job is queued
    rows = read_rows(args.input, args.field, args.id_field) if args.input else None
    texts = rows.texts if rows is not None else args.text
    job = _client().submit(
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


def _status(args: argparse.Namespace) -> int:
    from producers.dataset_cli import status_text

    status = _client().job(args.job).status()
    text = status_text(status) if status.get("kind") == "dataset" else output.status_text(status)
    print(json.dumps(status) if args.json else text)
    broken = status["state"] == "FAILURE" or status.get("output_problem")
    return EXIT_FAILED if broken else EXIT_OK


def _result(args: argparse.Namespace) -> int:
    from producers.writers import check_writable

    path = check_writable(args.output)  # before anything is fetched
    from producers.datasets import DatasetJob
    from producers.list_job import ListJob
    from tasks.jobs.jobstore import is_cancelled

    job = _client().job(args.job)
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


def _retry(args: argparse.Namespace) -> int:
    from producers import dataset_cli

    return dataset_cli.retry(args, _client())


def _delete(args: argparse.Namespace) -> int:
    from producers import dataset_cli

    return dataset_cli.delete(args, _client())


def _verify(args: argparse.Namespace) -> int:
    from producers import dataset_cli

    return dataset_cli.verify(args)


def _jobs(args: argparse.Namespace) -> int:
    rows = _client().jobs(limit=args.limit)
    print(json.dumps(rows) if args.json else output.jobs_text(rows))
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    revoked = _client().job(args.job).cancel()
    print(f"job {args.job}: cancelled, {revoked} chunk(s) not yet done were revoked")
    return EXIT_OK


def _reload(args: argparse.Namespace) -> int:
    rows = _client().reload(
        timeout=args.timeout, destination=args.worker, allow_empty=args.allow_empty
    )
    print(json.dumps(rows) if args.json else output.reload_text(rows))
    if not rows:
        return EXIT_FAILED
    return EXIT_OK if all(r["ok"] for r in rows) else EXIT_FAILED


def _models(args: argparse.Namespace) -> int:
    rows = _client().models()
    if args.json:
        print(json.dumps(output.models_json(rows)))
    else:
        print(output.models_text(rows))
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from producers.compare import compare
    from tasks.io.readers import read_texts

    texts = read_texts(args.input, args.field)[: args.sample]
    report = compare(_client(), args.model_a, args.model_b, texts, k=args.k)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:14} {value}")
    return EXIT_OK


def _optimize(args: argparse.Namespace) -> int:
    from workers.optimize.cli import run

    return run(args)


def _demo(args: argparse.Namespace) -> int:
    from producers.demo import run_demo

    return run_demo(args.input, args.model, args.output)


if __name__ == "__main__":
    sys.exit(main())
