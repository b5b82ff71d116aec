"""This process's runtime: built at worker boot, reached by the task, control commands
and the seed's entry points (``workers.cache``)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from tasks.contract.settings import Settings, load_settings
from workers.config.loader import DEFAULT_SOURCE, load_model_config
from workers.config.preflight import set_aside
from workers.serving.runtime import Runtime

_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's runtime; outside a worker (the seed's entry points) built on
    first use from the settings the environment gives."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = build_runtime(load_settings())
    return _runtime


def build_runtime(settings: Settings) -> Runtime:
    """A runtime for ``settings``: its config source, budget, policy and caches. Models
    whose type or source does not resolve are set aside with their reason, as a reload
    would refuse them (``workers.config.preflight``)."""
    config = set_aside(load_model_config(settings.config_source or DEFAULT_SOURCE))
    return Runtime(config, settings)


def current_runtime() -> Runtime | None:
    """This process's runtime if one was built (never builds one)."""
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or clear) this process's runtime (boot code and tests)."""
    global _runtime
    _runtime = runtime


def embed_texts(
    model: str, texts: list[str], options: dict[str, Any] | None = None
) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """Encode ``texts`` with ``model`` in this process's runtime (see ``Runtime.embed``)."""
    return get_runtime().embed(model, texts, options)
