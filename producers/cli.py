"""The ``embedfleet`` command line. Exit codes: 0 ok, 1 job failed, 2 usage or config error."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

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
    logging.basicConfig(
        level=os.environ.get("EMBEDFLEET_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
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
    sp.add_argument("--flower", action="store_true", help="also start Flower on port 5555")
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
    sp.add_argument("--timeout", type=float, default=3600)

    sp = cmd("status", _status, "state of a job: chunks done/total, failures")
    sp.add_argument("job")
    sp.add_argument("--json", action="store_true")

    sp = cmd("result", _result, "write a job's embeddings in input order")
    sp.add_argument("job")
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

    sp = cmd("models", _models, "per worker: models configured/loaded, RAM, hits")
    sp.add_argument("--json", action="store_true")

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

    started = fleet.up(workers=args.workers, flower=args.flower, models=args.models)
    where = "started an embedded server" if started.server else "using the running server"
    print(
        f"fleet up at {fleet.describe_url()} ({where}); "
        f"{args.workers} worker(s){' + flower on :5555' if args.flower else ''}"
    )
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    from producers import fleet

    stopped = fleet.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    return run_worker(args.models, args.concurrency, args.name, args.loglevel)


def _submit(args: argparse.Namespace) -> int:
    from producers.readers import read_texts
    from producers.writers import check_output, write_embeddings

    if args.output:
        check_output(args.output)
    texts = read_texts(args.input, args.field) if args.input else args.text
    job = _client().submit(texts, model=args.model)
    print(job.id)
    if args.wait or args.output:
        vectors = job.wait(timeout=args.timeout, progress=sys.stderr.isatty() or args.wait)
        if args.output:
            write_embeddings(args.output, vectors)
            print(f"wrote {vectors.shape[0]}x{vectors.shape[1]} to {args.output}", file=sys.stderr)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    status = _client().job(args.job).status()
    print(json.dumps(status) if args.json else output.status_text(status))
    return EXIT_FAILED if status["state"] == "FAILURE" else EXIT_OK


def _result(args: argparse.Namespace) -> int:
    from producers.writers import check_output, write_embeddings

    path = check_output(args.output)
    job = _client().job(args.job)
    if path.suffix.lower() == ".npy":
        output.stream_npy(job, path, timeout=args.timeout)
    else:
        write_embeddings(path, job.wait(timeout=args.timeout, progress=True))
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
    rows = _client().reload(timeout=args.timeout, destination=args.worker)
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


def _demo(args: argparse.Namespace) -> int:
    from producers.demo import run_demo

    return run_demo(args.input, args.model, args.output)


if __name__ == "__main__":
    sys.exit(main())
