"""Remote-control commands, run in the worker's main process (where the cache lives).

``reload_models`` takes no path or code from the wire: a worker re-reads the config
source it was started with, nothing else (its one argument, ``allow_empty``, is a
boolean). ``embedfleet_models`` reports the cache.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from celery.worker.control import control_command, inspect_command

from tasks.contract.logs import event_logger
from tasks.routing import queue_for
from workers.errors import ConfigError
from workers.memory.readings import rss_gb
from workers.serving.runtime import Runtime
from workers.serving.worker import worker_of

log = event_logger(__name__)


def _app_of(state: Any) -> Any:
    return getattr(getattr(state, "consumer", None), "app", None)


def runtime_of(state: Any) -> Runtime:
    """The runtime of the worker a control command runs in: the one its boot built
    (``FleetApp.worker``), else this process's (``workers.serving.process``)."""
    worker = worker_of(_app_of(state))
    if worker is not None:
        return worker.runtime
    from workers.serving.process import get_runtime

    return get_runtime()


@inspect_command(name="embedfleet_models")  # type: ignore[misc]
def embedfleet_models(state: Any, **_: Any) -> dict[str, Any]:
    """This worker's config hash, budget, RSS and one row per configured model."""
    runtime = runtime_of(state)
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "config_hash": runtime.config.config_hash,
        "config_source": runtime.config.source,
        "config_errors": runtime.config.errors,
        "served": runtime.served_models(),
        "budget_gb": round(runtime.cache.budget_gb, 3),
        "rss_gb": round(rss_gb(), 3),
        "loads": runtime.cache.loads,
        "evictions": runtime.cache.evictions,
        "models": with_quant_ranges(runtime.cache.snapshot(), runtime.quant_ranges_report()),
        "embedding_cache": runtime.embedding_cache.stats() if runtime.embedding_cache else None,
    }


def with_quant_ranges(
    rows: list[dict[str, Any]], ranges: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each model row with the int8/uint8 ranges this worker uses for it, by dimensions
    (``{"384": {"version", "ranges": [[min...], [max...]]}}``; empty until a job asks)."""
    return [{**row, "quantization": ranges.get(str(row.get("name")), {})} for row in rows]


@control_command(name="reload_models")  # type: ignore[misc]
def reload_models(state: Any, allow_empty: Any = False, **_: Any) -> dict[str, Any]:
    """Re-read this worker's model config and apply it live; one reply row.

    ``allow_empty`` (true only when it is the JSON ``true``) lets a config without any
    model through: it stops this worker serving every model.
    """
    runtime = runtime_of(state)
    served_before = set(runtime.served_models())
    try:
        change, _old = runtime.reload(allow_empty=allow_empty is True)
    except Exception as exc:  # ConfigError, or a source that broke: keep serving, say why
        if not isinstance(exc, ConfigError):
            exc = ConfigError(f"{type(exc).__name__}: {exc}")
        log.error(
            "event=reload_rejected config_hash=%s error=%r", runtime.config.config_hash, str(exc)
        )
        return {
            "ok": False,
            "config_hash": runtime.config.config_hash,
            "added": [],
            "removed": [],
            "changed": [],
            "error": str(exc),
        }
    served_after = set(runtime.served_models())
    consumer = getattr(state, "consumer", None)
    if consumer is not None:
        for name in sorted(served_after - served_before):
            consumer.add_task_queue(queue_for(name))
            log.info("event=queue_added queue=%s", queue_for(name))
        for name in sorted(served_before - served_after):
            consumer.cancel_task_queue(queue_for(name))
            log.info("event=queue_cancelled queue=%s", queue_for(name))
    worker = worker_of(_app_of(state))
    if worker is not None and worker.publisher is not None:
        worker.publisher.publish()  # the fleet's catalog shows the new config now
    # Preloads run after the reply, so the reply is fast.
    wanted = change.added + change.changed
    if wanted:
        threading.Thread(
            target=runtime.preload, args=(wanted,), name="embedfleet-reload-preload", daemon=True
        ).start()
    return {
        "ok": True,
        "config_hash": change.config_hash,
        "added": change.added,
        "removed": change.removed,
        "changed": change.changed,
        "error": None,
    }
