"""The ``embedfleet`` command line. Exit codes: 0 ok, 1 job failed, 2 usage or config error."""

# (The docstring above is `embedfleet --help`'s description.) This module is the entry
# point (``main``: settings, logging, errors to exit codes) and the argument parser. The
# verbs are in ``producers.cli_jobs`` (submit, status, result, retry, cancel, delete,
# jobs, verify; a dataset submit in ``producers.cli_datasets``) and
# ``producers.cli_fleet`` (up, down, worker, serve, reload, models, compare, optimize,
# demo).

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

import producers.cli_fleet as fleet_verbs
import producers.cli_jobs as job_verbs
import producers.embed_options as embed_options
from producers.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, JobFailedError, UsageError
from tasks.contract.errors import EmbedfleetError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from tasks.contract.logs import configure_logging
    from tasks.contract.renames import Notice, log_notices
    from tasks.contract.settings import load_settings, use_settings

    try:
        # Every EMBEDFLEET_* variable, read and checked once: a bad one is exit 2 here.
        notices: list[Notice] = []  # its warnings, logged once logging is configured
        args.settings = use_settings(load_settings(notices=notices))  # this process's
        configure_logging(args.settings.log_level, json_lines=args.settings.log_json)
        log_notices(notices)
        from celeryconfig import url_problem

        problem = url_problem(args.settings.redis_url)
        if problem:
            print(f"embedfleet: {problem}", file=sys.stderr)
            return EXIT_USAGE
        try:
            return int(args.func(args) or EXIT_OK)
        finally:
            # Native objects (pyarrow readers and their thread pools) go while their
            # libraries still work, not in the interpreter's last teardown, where a
            # reader's thread aborted the CLI at exit ("terminate called without an
            # active exception", rc -6) now and then (apache/arrow#34314).
            gc.collect()
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
        from producers.local_fleet import describe_url
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

    sp = cmd(
        "up", fleet_verbs.up, "start the local fleet in the background (embedded server if needed)"
    )
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
    cmd("down", fleet_verbs.down, "stop what `embedfleet up` started")

    sp = cmd("worker", fleet_verbs.worker, "run one worker in the foreground")
    sp.add_argument("--models", default="all", help="comma-separated model names, or 'all'")
    sp.add_argument(
        "--concurrency", type=int, default=1, help="chunks run at once (pool threads; default 1)"
    )
    sp.add_argument("--name", default=None, help="worker node name (default embedfleet@%%h)")
    sp.add_argument("--loglevel", default="INFO", help="log level (default INFO)")

    sp = cmd(
        "serve",
        fleet_verbs.serve,
        "the OpenAI-compatible HTTP gateway (embeddings, files, batches)",
    )
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    sp.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without API keys (only on a loopback address)",
    )

    sp = cmd("submit", job_verbs.submit, "submit an embedding job")
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

    sp = cmd("status", job_verbs.status, "state of a job: chunks done/total, failures")
    sp.add_argument("job")
    sp.add_argument("--json", action="store_true", help="print the status as JSON")

    sp = cmd("result", job_verbs.result, "write a job's embeddings in input order")
    sp.add_argument("job")
    sp.add_argument(
        "--partial", action="store_true", help="write what succeeded; failed chunks' rows NaN"
    )
    sp.add_argument("--output", required=True, help="a .npy, .parquet or .jsonl file")
    sp.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for chunks still running"
    )
    sp.add_argument("--delete", action="store_true", help="free the job's keys once written")

    sp = cmd("retry", job_verbs.retry, "re-run only a job's failed or missing chunks")
    sp.add_argument("job")
    sp.add_argument("--wait", action="store_true", help="wait for the chunks sent again")
    sp.add_argument(
        "--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)"
    )

    sp = cmd("delete", job_verbs.delete, "free a job's keys in Redis now")
    sp.add_argument("job")

    sp = cmd("verify", job_verbs.verify, "check a dataset job's output folder against its manifest")
    sp.add_argument("dest", help="DEST/ or s3://bucket/prefix/")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")

    sp = cmd("jobs", job_verbs.jobs, "recent jobs with state and progress")
    sp.add_argument("--json", action="store_true", help="print the jobs as JSON")
    sp.add_argument("--limit", type=int, default=20, help="jobs shown, newest first (default 20)")

    sp = cmd("cancel", job_verbs.cancel, "revoke a job's chunks not yet started")
    sp.add_argument("job")

    sp = cmd("reload", fleet_verbs.reload, "broadcast: every worker re-reads its model config")
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

    sp = cmd("models", fleet_verbs.models, "per worker: models configured/loaded, RAM, hits")
    sp.add_argument("--json", action="store_true", help="print the rows as JSON")
    sp.add_argument(
        "--worker",
        action="append",
        help="only this worker (repeatable; by default, the workers the fleet's catalog "
        "lists as live): answers once each named one has",
    )

    sp = cmd("compare", fleet_verbs.compare, "how far two models agree on a sample of texts")
    sp.add_argument("model_a")
    sp.add_argument("model_b")
    sp.add_argument(
        "--input", required=True, help="texts to compare on (a .jsonl/.csv/.parquet/.txt file)"
    )
    sp.add_argument("--field", help="field or column holding the text (default: text)")
    sp.add_argument("--sample", type=int, default=500, help="texts taken from the input")
    sp.add_argument("-k", type=int, default=10, help="neighbours compared per text")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")

    sp = cmd(
        "optimize", fleet_verbs.optimize, "export, quantize, gate, benchmark and register a model"
    )
    from workers.optimize.cli import add_arguments as optimize_arguments

    optimize_arguments(sp)

    sp = cmd("demo", fleet_verbs.demo, "the main job end to end on the embedded default")
    sp.add_argument("--input", default=None, help="texts to embed (default: the sample file)")
    sp.add_argument("--model", default="all-MiniLM-L6-v2", help="model to embed with")
    sp.add_argument(
        "--output", default="out/demo.npy", help="where the vectors go (default out/demo.npy)"
    )
    return p


if __name__ == "__main__":
    sys.exit(main())
