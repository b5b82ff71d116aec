"""Remote-control commands, run in the worker's main process (where the cache lives)."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery.worker.control import inspect_command

from workers.memory import rss_gb


@inspect_command(name="embedfleet_models")  # type: ignore[untyped-decorator]
def embedfleet_models(state: Any, **_: Any) -> dict[str, Any]:
    """This worker's config hash, budget, RSS and one row per configured model."""
    from workers.runtime import get_runtime

    runtime = get_runtime()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "config_hash": runtime.config.config_hash,
        "config_source": runtime.config.source,
        "config_errors": runtime.config.errors,
        "budget_gb": round(runtime.cache.budget_gb, 3),
        "rss_gb": round(rss_gb(), 3),
        "loads": runtime.cache.loads,
        "evictions": runtime.cache.evictions,
        "models": runtime.cache.snapshot(),
    }
