"""Worker boot: threads, config, cache, events, metrics, preloads, control commands.

Imported by the worker's entry point (``workers.serving.main``), and named in
celeryconfig's ``imports`` for ``celery -A tasks worker``; producers never import it. At
``worker_init`` it builds this process's runtime and hands its encoder to the app the
worker runs (``tasks.app.FleetApp.encoder``).
"""

from __future__ import annotations

import threading
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

import celeryconfig
import workers.serving.control  # noqa: F401  (registers the remote-control commands)
from tasks.app import app as default_app
from tasks.contract.logs import event_logger
from tasks.jobs.deliveries import start_heartbeat
from tasks.jobs.reclaim import Reclaimer
from workers.memory.watchdog import start_watchdog
from workers.models.fidelity import set_min_cosine_bar
from workers.observability.endpoint import start_metrics
from workers.serving.chunk_events import install_chunk_events
from workers.serving.process import (
    build_runtime,
    current_runtime,
    get_runtime,
    set_runtime,
)
from workers.serving.publication import start_publisher, stop_publisher
from workers.serving.threads import configure_threads
from workers.sources.s3 import set_model_cache_dir

log = event_logger(__name__)


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    pool = getattr(sender, "pool_cls", None)
    pool_name = getattr(pool, "__module__", str(pool))
    if "prefork" in str(pool_name):
        log.warning(
            "event=pool_warning pool=prefork msg=%r",
            "use -P threads or -P solo: with prefork, reload broadcasts never reach the "
            "children's model caches",
        )
    # The settings the worker's entry point handed over (or the environment, read once,
    # under `celery -A tasks worker`); what follows takes its values from them.
    app = getattr(sender, "app", None) or default_app
    settings = app.settings
    concurrency = int(getattr(sender, "concurrency", 1) or 1)
    configure_threads(concurrency, settings.threads)
    set_model_cache_dir(settings.model_cache)
    set_min_cosine_bar(settings.precision_min_cosine)
    runtime = build_runtime(settings)
    set_runtime(runtime)
    app.encoder = runtime.embed  # the chunk tasks encode through this process's runtime
    install_chunk_events()  # Celery task signals -> chunk_finished events
    # Published before the worker consumes, so a producer that sees it ready finds its models.
    if app is not None:
        start_publisher(
            str(getattr(sender, "hostname", "worker")),
            app.backend.client,
            get_runtime,
            concurrency,
        )
        # Alive before it takes a chunk (beating at this worker's lapse); gives back the
        # chunks of workers that died.
        heartbeat = start_heartbeat(app.backend.client, celeryconfig.worker_lapse_s(settings))
        Reclaimer(app.backend.client, app.connection_for_write, heartbeat.interval_s).start()
    if settings.metrics_port:  # 0 = off
        start_metrics(settings.metrics_port, get_runtime, settings.metrics_addr)
    if settings.profile:  # EMBEDFLEET_PROFILE, a bench's cProfile prefix
        from workers.observability.profiling import start_profiling

        start_profiling(settings.profile)


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    settings = get_runtime().settings
    start_watchdog(
        lambda: get_runtime().cache, settings.watchdog_interval_s, settings.memory_floor_gb
    )
    # Preloads run in the background: the worker consumes as soon as it is ready.
    threading.Thread(target=get_runtime().preload, name="embedfleet-preload", daemon=True).start()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    stop_publisher()
    runtime = current_runtime()
    if runtime is not None:
        runtime.close()
