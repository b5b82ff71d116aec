"""The ``embedfleet`` command line. Exit codes: 0 ok, 1 job failed, 2 usage or config error."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from producers import output
from producers.errors import JobFailedError, UsageError
from tasks.errors import EmbedfleetError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from tasks.logs import configure_logging

    configure_logging(os.environ.get("EMBEDFLEET_LOG_LEVEL", "WARNING"))
    import celeryconfig

    problem = celeryconfig.url_problem(celeryconfig.REDIS_URL)
    if problem:
        print(f"embedfleet: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
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
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--flower", action="store_true", help="also start Flower")
    sp.add_argument("--flower-port", type=int, default=5555)
    sp.add_argument(
        "--flower-auth",
        default=os.environ.get("FLOWER_BASIC_AUTH"),
        help="user:password for Flower's basic auth (default: $FLOWER_BASIC_AUTH)",
    )
    sp.add_argument("--models", default="all")
    cmd("down", _down, "stop what `embedfleet up` started")

    sp = cmd("worker", _worker, "run one worker in the foreground")
    sp.add_argument("--models", default="all", help="comma-separated model names, or 'all'")
    sp.add_argument("--concurrency", type=int, default=1)
    sp.add_argument("--name", default=None, help="worker node name (default embedfleet@%%h)")
    sp.add_argument("--loglevel", default="INFO")

    sp = cmd("submit", _submit, "submit an embedding job")
    sp.add_argument("--model", required=True)
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="a .jsonl, .csv, .parquet or .txt file")
    src.add_argument("--text", nargs="+", help="texts given on the command line")
    sp.add_argument("--field", help="field or column holding the text (default: text)")
    sp.add_argument("--output", help="write embeddings here (.npy, .parquet, .jsonl)")
    sp.add_argument("--wait", action="store_true", help="wait with a progress bar")
    sp.add_argument("--key", help="A/B aliases: the same key always gets the same target")
    sp.add_argument("--no-cache", action="store_true", help="bypass the embedding cache")
    sp.add_argument("--timeout", type=float, default=3600)

    sp = cmd("status", _status, "state of a job: chunks done/total, failures")
    sp.add_argument("job")
    sp.add_argument("--json", action="store_true")

    sp = cmd("result", _result, "write a job's embeddings in input order")
    sp.add_argument("job")
    sp.add_argument(
        "--partial", action="store_true", help="write what succeeded; failed chunks' rows NaN"
    )
    sp.add_argument("--output", required=True)
    sp.add_argument("--timeout", type=float, default=3600)

    sp = cmd("jobs", _jobs, "recent jobs with state and progress")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--limit", type=int, default=20)

    sp = cmd("cancel", _cancel, "revoke a job's chunks not yet started")
    sp.add_argument("job")

    sp = cmd("reload", _reload, "broadcast: every worker re-reads its model config")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--timeout", type=float, default=10.0)
    sp.add_argument("--worker", action="append", help="only this worker (repeatable)")
    sp.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a config without any model (workers then serve nothing)",
    )

    sp = cmd("models", _models, "per worker: models configured/loaded, RAM, hits")
    sp.add_argument("--json", action="store_true")

    sp = cmd("compare", _compare, "how far two models agree on a sample of texts")
    sp.add_argument("model_a")
    sp.add_argument("model_b")
    sp.add_argument("--input", required=True)
    sp.add_argument("--field")
    sp.add_argument("--sample", type=int, default=500, help="texts taken from the input")
    sp.add_argument("-k", type=int, default=10, help="neighbours compared per text")
    sp.add_argument("--json", action="store_true")

    sp = cmd("optimize", _optimize, "export, quantize, gate, benchmark and register a model")
    from workers.optimize.cli import add_arguments as optimize_arguments

    optimize_arguments(sp)

    sp = cmd("demo", _demo, "the main job end to end on the embedded default")
    sp.add_argument("--input", default=None, help="texts to embed (default: the sample file)")
    sp.add_argument("--model", default="all-MiniLM-L6-v2")
    sp.add_argument("--output", default="out/demo.npy")
    return p


def _client() -> Any:
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
    where = "started an embedded server" if started.server else "using the running server"
    flower = f" + flower on http://127.0.0.1:{args.flower_port}" if args.flower else ""
    print(f"fleet up at {fleet.describe_url()} ({where}); {args.workers} worker(s){flower}")
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    from producers import fleet

    queued = fleet.queued_on_embedded_server()
    if queued:
        print(
            f"embedfleet: warning: stopping the embedded server while it holds {queued} "
            "chunk(s) of unfinished jobs; `embedfleet up` again to finish them",
            file=sys.stderr,
        )
    stopped = fleet.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from workers.serving.main import run_worker

    return run_worker(args.models, args.concurrency, args.name, args.loglevel)


def _submit(args: argparse.Namespace) -> int:
    from producers.writers import check_writable
    from tasks.io.readers import read_texts

    out = check_writable(args.output) if args.output else None  # before the job is queued
    texts = read_texts(args.input, args.field) if args.input else args.text
    job = _client().submit(texts, model=args.model, key=args.key, cache=not args.no_cache)
    print(job.id, flush=True)  # scripts read the id before the wait ends
    progress = sys.stderr.isatty() or args.wait
    if out is not None:
        output.write_job(job, out, timeout=args.timeout, progress=progress)
        print(f"wrote {job.record.n} rows to {out}", file=sys.stderr)
    elif args.wait:
        job.wait(timeout=args.timeout, progress=progress)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    status = _client().job(args.job).status()
    print(json.dumps(status) if args.json else output.status_text(status))
    return EXIT_FAILED if status["state"] == "FAILURE" else EXIT_OK


def _result(args: argparse.Namespace) -> int:
    from producers.writers import check_writable

    path = check_writable(args.output)
    job = _client().job(args.job)
    # Rows of failed or cancelled chunks would be NaN: only with --partial (else exit 1)
    partial = bool(args.partial)
    try:
        output.write_job(job, path, timeout=args.timeout, progress=True, allow_failed=partial)
    except JobFailedError as exc:
        print(f"embedfleet: {exc} (--partial writes the rest, those rows NaN)", file=sys.stderr)
        return EXIT_FAILED
    if partial:
        print("rows of chunks that failed or were cancelled are NaN", file=sys.stderr)
    print(f"wrote {job.record.n} rows to {path}", file=sys.stderr)
    return EXIT_OK


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
