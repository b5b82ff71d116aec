"""Worker boot: threads, config, cache, preloads, control commands.

Listed in ``app.conf.imports`` (tasks/app.py), so a worker started either way
(``embedfleet worker`` or ``celery -A tasks worker``) imports it; producers never do.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

import workers.serving.control  # noqa: F401  (registers the remote-control commands)
from tasks.embed import install_encoder
from workers.config.loader import load_model_config
from workers.config.preflight import set_aside
from workers.memory.watchdog import start_watchdog
from workers.serving.process import embed_texts, get_runtime, set_runtime
from workers.serving.publication import start_publisher, stop_publisher
from workers.serving.runtime import Runtime
from workers.serving.threads import configure_threads

log = logging.getLogger(__name__)


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
    configure_threads(int(getattr(sender, "concurrency", 1) or 1))
    set_runtime(Runtime(set_aside(load_model_config())))
    install_encoder(embed_texts)
    from workers.observability.metrics import (
        start_metrics_from_env,  # EMBEDFLEET_METRICS_PORT, 0 = off
    )

    start_metrics_from_env()


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    start_watchdog(lambda: get_runtime().cache)
    app = getattr(sender, "app", None)
    if app is not None:
        start_publisher(str(getattr(sender, "hostname", "worker")), app.backend.client, get_runtime)
    # Preloads run in the background: the worker consumes as soon as it is ready.
    threading.Thread(target=get_runtime().preload, name="embedfleet-preload", daemon=True).start()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    stop_publisher()
