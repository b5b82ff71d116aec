"""``embedfleet worker``: one Celery worker consuming ``embed.<model>`` queues.

The pool is ``threads``: remote-control commands (reload, inspect) run in the main
process, and with threads that is also where the model cache lives. torch and
onnxruntime release the GIL while they compute.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from tasks.routing import queue_for
from workers.errors import ConfigError as UsageError

if TYPE_CHECKING:
    from tasks.settings import Settings


def run_worker(
    models: str,
    concurrency: int = 1,
    name: str | None = None,
    loglevel: str = "INFO",
    settings: Settings | None = None,
) -> int:
    """Run a worker in the foreground until it is stopped; returns its exit code.

    ``settings`` are the ones the CLI checked (default: read now); the worker's boot
    reads the same environment, with ``--models`` as ``EMBEDFLEET_WORKER_MODELS``."""
    from tasks.settings import load_settings
    from workers.config.loader import DEFAULT_SOURCE, load_model_config
    from workers.serving.selection import SELECTION_ENV, selected_models

    settings = settings or load_settings()
    config = load_model_config(settings.config_source or DEFAULT_SOURCE)
    wanted = selected_models(models)
    if wanted is None:
        served = sorted(config)
    else:
        served = wanted
        unknown = [m for m in served if m not in config]
        if unknown:
            raise UsageError(
                f"unknown model(s) {', '.join(unknown)}; configured: {', '.join(sorted(config))}"
            )
    if not served:
        raise UsageError(f"{config.source}: no valid model to serve; errors: {config.errors}")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    os.environ[SELECTION_ENV] = models
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _configure_logging(loglevel, settings.log_json)
    from tasks.app import app

    argv = [
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--queues",
        ",".join(queue_for(m) for m in served),
        "--hostname",
        name or "embedfleet@%h",
        "--loglevel",
        loglevel,
        "--without-gossip",
    ]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _configure_logging(level: str, json_lines: bool) -> None:
    """key=value text lines on stderr (Celery is told not to hijack the root logger);
    JSON lines when ``EMBEDFLEET_LOG_JSON=1``."""
    from tasks.logs import configure_logging

    configure_logging(level, sys.stderr, json_lines)
