"""``embedfleet worker``: one Celery worker consuming ``embed.<model>`` queues.

The pool is ``threads``: remote-control commands (reload, inspect) run in the main
process, and with threads that is also where the model cache lives. torch and
onnxruntime release the GIL while they compute.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from tasks.routing import MODEL_NAME_RE, queue_for
from workers.errors import ConfigError as UsageError

if TYPE_CHECKING:
    from tasks.contract.settings import Settings


def run_worker(
    models: str,
    concurrency: int = 1,
    name: str | None = None,
    loglevel: str = "INFO",
    settings: Settings | None = None,
) -> int:
    """Run a worker in the foreground until it is stopped; returns its exit code.

    ``settings`` are the ones the CLI checked (default: read now); they become this
    process's settings, which the worker's boot takes from its app, with ``--models`` as
    ``EMBEDFLEET_WORKER_MODELS``."""
    from tasks.contract.renames import Notice, log_notices
    from tasks.contract.settings import load_settings, use_settings
    from workers.config.loader import DEFAULT_SOURCE, load_model_config
    from workers.config.preflight import set_aside
    from workers.serving.selection import SELECTION_ENV, selected_models

    notices: list[Notice] = []  # the settings' warnings, logged once logging is configured
    settings = use_settings(settings or load_settings(notices=notices))  # this process's
    # the same checks as a reload's
    config = set_aside(load_model_config(settings.config_source or DEFAULT_SOURCE))
    wanted = selected_models(models)
    if wanted is None:
        served = sorted(config)
    else:
        served = wanted
        unknown = [m for m in served if m not in config]
        invalid = [config.errors[m] for m in served if m in config.errors]
        if invalid:
            raise UsageError("; ".join(invalid))
        if unknown:
            raise UsageError(
                f"unknown model(s) {', '.join(unknown)}; configured: {', '.join(sorted(config))}"
            )
    if not served:
        raise UsageError(f"{config.source}: no valid model to serve; errors: {config.errors}")
    # Entries set aside (invalid, or their type or source does not resolve) are consumed
    # too, so a chunk sent to one fails at once naming the reason instead of waiting.
    queues = served + sorted(m for m in config.errors if wanted is None or m in wanted)
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    check_redis_credentials()
    from tasks.contract.signing import key_of

    key_of(settings)  # the job key, made now if it is the state folder's (ConfigError: exit 2)
    os.environ[SELECTION_ENV] = models
    use_settings(settings.model_copy(update={"worker_models": models}))  # the boot's
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _configure_logging(loglevel, settings.log_json)
    log_notices(notices)
    import workers.serving.boot  # noqa: F401  (the worker's boot: runtime, encoder, threads)
    from tasks.app import app

    argv = [
        "worker",  # the pool: celeryconfig.worker_pool (threads, guarded: tasks/guards/pool.py)
        "--concurrency",
        str(concurrency),
        "--queues",
        ",".join(queue_for(m) for m in queues if MODEL_NAME_RE.match(m)),
        "--hostname",
        name or "embedfleet@%h",
        "--loglevel",
        loglevel,
        "--without-gossip",
        # mingle waits 1 s at every start for the other workers' revoked lists; a chunk
        # of a cancelled job is refused from the job record anyway (tasks/chunks).
        "--without-mingle",
    ]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _configure_logging(level: str, json_lines: bool) -> None:
    """key=value text lines on stderr (Celery is told not to hijack the root logger);
    JSON lines when ``EMBEDFLEET_LOG_JSON=1``."""
    from tasks.contract.logs import configure_logging

    configure_logging(level, sys.stderr, json_lines)


def check_redis_credentials() -> None:
    """Stop with one line when Redis refuses this worker's password or user.

    Celery retries a lost broker for ever (it may be restarting); a password that is
    wrong never becomes right, so it is a configuration error (exit 2), not a wait.
    Redis that does not answer at all is left to Celery's retries.
    """
    import redis

    from tasks.app import app

    try:
        app.backend.client.ping()
    except redis.AuthenticationError as exc:
        raise UsageError(f"Redis refused this worker's credentials ({_where()}): {exc}") from None
    except redis.ResponseError as exc:
        if any(word in str(exc) for word in ("WRONGPASS", "NOAUTH", "NOPERM", "password")):
            raise UsageError(
                f"Redis refused this worker's credentials ({_where()}): {exc}"
            ) from None
        raise
    except redis.RedisError:
        return  # unreachable for now: Celery retries until it answers


def _where() -> str:
    import re

    from tasks.app import app

    masked = re.sub(r"//([^@/]*)@", "//***@", app.settings.redis_url)  # no password in logs
    return f"EMBEDFLEET_REDIS_URL={masked}"
