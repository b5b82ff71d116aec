"""Worker boot: threads, config, cache, events, metrics, preloads, control commands.

Imported by the worker's entry point (``workers.serving.main``), and named in
celeryconfig's ``imports`` for ``celery -A tasks worker``; producers never import it. At
``worker_init`` it builds this process's :class:`Worker` from the settings of the app
the worker runs (its runtime, and what keeps it published, alive and observed), hangs it
on the app (``FleetApp.worker``, where the remote-control commands find it) and hands the
runtime's encoder to the app (``FleetApp.encoder``). Nothing it builds is a module global:
each part is handed what it needs (settings, Redis client, the runtime's events).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

import celeryconfig
import workers.serving.control  # noqa: F401  (registers the remote-control commands)
from tasks.app import app as default_app
from tasks.contract.errors import ConfigError, EmbedfleetError
from tasks.contract.logs import event_logger
from tasks.jobs.deliveries import start_heartbeat
from tasks.jobs.reclaim import Reclaimer
from workers.models.fidelity import set_min_cosine_bar
from workers.observability.endpoint import start_metrics
from workers.serving.chunk_events import install_chunk_events
from workers.serving.process import build_runtime, set_runtime
from workers.serving.publication import start_publisher
from workers.serving.threads import configure_threads
from workers.serving.worker import Worker, worker_of
from workers.sources.s3 import set_download_dir

log = event_logger(__name__)

#: The exit code of a worker stopped by a bad setting or config at boot (the CLI's).
EXIT_USAGE = 2


def boot_worker(celery_app: Any, hostname: str, concurrency: int) -> Worker:
    """Build and start a worker's parts from ``celery_app``'s settings (see module doc).

    A step that raises stops what the earlier ones started (the catalog entry, the
    heartbeat, the reclaimer, ``/metrics``, the runtime) before the error goes on; the
    app gets its encoder and its worker only once every part is up."""
    settings = celery_app.settings
    configure_threads(concurrency, settings.threads)
    set_download_dir(settings.download_dir)
    set_min_cosine_bar(settings.precision_min_cosine)
    client = celery_app.backend.client
    runtime = build_runtime(settings, client)
    try:
        worker = Worker(runtime, install_chunk_events(runtime.events))  # signals -> events
    except BaseException:
        runtime.close()
        raise
    try:
        _start_parts(worker, celery_app, hostname, concurrency)
    except BaseException:
        worker.close()
        raise
    set_runtime(runtime)  # the seed's entry points (workers.cache) reach it there
    celery_app.encoder = runtime.embed  # the chunk tasks encode through this runtime
    celery_app.worker = worker
    return worker


def _start_parts(worker: Worker, celery_app: Any, hostname: str, concurrency: int) -> None:
    """Start what keeps ``worker`` published, alive and observed, keeping each on it as
    it starts (so :meth:`Worker.close` stops what did start if a later step raises)."""
    settings, client, runtime = celery_app.settings, celery_app.backend.client, worker.runtime
    # Published before the worker consumes, so a producer that sees it ready finds its
    # models; fresh in the catalog for at most this worker's lapse.
    lapse_s = celeryconfig.worker_lapse_s(settings)
    worker.publisher = start_publisher(hostname, client, lambda: runtime, concurrency, lapse_s)
    # Alive before it takes a chunk (beating at this worker's lapse); gives back the
    # chunks of workers that died.
    worker.heartbeat = start_heartbeat(client, lapse_s)
    worker.reclaimer = Reclaimer(
        client, celery_app.connection_for_write, worker.heartbeat.interval_s
    )
    worker.reclaimer.start()
    if settings.metrics_port:  # 0 = off
        worker.endpoint = start_metrics(
            settings.metrics_port, lambda: runtime, runtime.events, settings.metrics_addr
        )
    if settings.profile:  # EMBEDFLEET_PROFILE, a bench's cProfile prefix
        from workers.observability.profiling import start_profiling

        start_profiling(settings.profile)


def pool_problem(pool: Any) -> str | None:
    """Why a worker cannot run Celery's pool ``pool`` (a ``-P`` name or a class), or
    None for the threads pool (celeryconfig's) and ``solo``.

    A worker's heartbeat, catalog entry, model cache and reloads live in the process
    its boot ran in: a prefork child would take chunks under a worker id that never
    beats (reclaimed as a dead worker's after the lapse), and reloads would never reach
    its models. So every pool that runs tasks elsewhere is refused."""
    if pool is None:
        return None
    from celery.concurrency import get_implementation
    from celery.concurrency.solo import TaskPool as SoloPool
    from celery.concurrency.thread import TaskPool as ThreadsPool

    try:
        cls = get_implementation(pool) if isinstance(pool, str) else pool
    except Exception:  # noqa: BLE001  (an unknown or uninstalled pool: refused below)
        cls = None
    if isinstance(cls, type) and issubclass(cls, (ThreadsPool, SoloPool)):
        return None
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", str(pool))
    return (
        f"the {name.rsplit('.', 1)[-1]} pool cannot run an embedfleet worker (its heartbeat and "
        "models live in the process that booted): use -P threads"
    )


def pool_on_command_line(argv: list[str]) -> str | None:
    """The pool a ``celery worker`` command line names (``-P x``, ``-Px``, ``--pool x``,
    ``--pool=x``), or None. Celery gives the configured pool (threads) for ``-P
    prefork``, its default, as if nothing was named (the README keeps that): the boot
    says so in one line rather than run threads without a word."""
    for i, arg in enumerate(argv):
        if arg in ("-P", "--pool"):
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("--pool="):
            return arg.partition("=")[2]
        if arg.startswith("-P") and len(arg) > 2:
            return arg[2:]
    return None


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # The settings the worker's entry point handed over (or the environment, read once,
    # under `celery -A tasks worker`), through the app.
    celery_app = getattr(sender, "app", None) or default_app
    concurrency = int(getattr(sender, "concurrency", 1) or 1)
    hostname = str(getattr(sender, "hostname", "worker"))
    try:
        problem = pool_problem(getattr(sender, "pool_cls", None))
        if problem:
            raise ConfigError(problem)
        if pool_on_command_line(sys.argv[1:]) == "prefork":
            log.warning(
                "event=pool_kept pool=threads asked=prefork reason=%r",
                "Celery gives the configured pool for -P prefork, its default: the worker "
                "runs threads (its heartbeat and models live in one process)",
            )
        boot_worker(celery_app, hostname, concurrency)
    except Exception as exc:
        # Celery logs a signal handler's exception and goes on: the worker would consume
        # with no encoder and fail every chunk. It stops instead (SystemExit passes).
        if isinstance(exc, EmbedfleetError):  # a bad setting or config: its one line
            log.error("event=worker_boot_failed worker=%s error=%r", hostname, str(exc))
        else:
            log.exception("event=worker_boot_failed worker=%s error=%r", hostname, str(exc))
        raise SystemExit(EXIT_USAGE if isinstance(exc, ConfigError) else 1) from None


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    worker = worker_of(getattr(sender, "app", None) or default_app)
    if worker is None:
        return
    worker.start_watchdog()
    # Preloads run in the background: the worker consumes as soon as it is ready.
    threading.Thread(target=worker.runtime.preload, name="embedfleet-preload", daemon=True).start()


@worker_shutdown.connect
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    worker = worker_of(getattr(sender, "app", None) or default_app)
    if worker is not None:
        worker.close()
