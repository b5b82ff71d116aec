"""This process's runtime, for what has no object to be handed one: the seed's
module-level entry points (``workers.cache``) and ``embed_texts``.

A worker's boot builds its runtime and installs it here (:meth:`ProcessRuntime.use`);
outside a worker it is built on first use from the settings the environment gives. One
per process on purpose: those entry points are plain functions, so the process is the
only owner they can reach. Everything else gets the runtime from the boot that built it
(``workers.serving.boot.Worker``).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from tasks.contract.settings import Settings, load_settings
from workers.config.loader import DEFAULT_SOURCE, load_model_config
from workers.config.preflight import set_aside
from workers.serving.runtime import Runtime


def build_runtime(settings: Settings, client: Any = None) -> Runtime:
    """A runtime for ``settings``: its config source, budget, policy and caches, on the
    Redis ``client`` (the worker's app's; default: the default app's). Models whose type or
    source does not resolve are set aside with their reason, as a reload would refuse
    them (``workers.config.preflight``)."""
    config = set_aside(load_model_config(settings.config_source or DEFAULT_SOURCE))
    return Runtime(config, settings, client=client)


class ProcessRuntime:
    """Holds one process's runtime (tests build their own holder to check it alone)."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        """The runtime installed, else one built now from the environment's settings."""
        with self._lock:
            if self._runtime is None:
                self._runtime = build_runtime(load_settings())
            return self._runtime

    def current(self) -> Runtime | None:
        """The runtime installed or built, if any (never builds one)."""
        return self._runtime

    def use(self, runtime: Runtime | None) -> None:
        """Install (or clear) the runtime."""
        with self._lock:
            self._runtime = runtime


_PROCESS = ProcessRuntime()


def get_runtime() -> Runtime:
    """This process's runtime (see :class:`ProcessRuntime`)."""
    return _PROCESS.get()


def current_runtime() -> Runtime | None:
    """This process's runtime if one was built (never builds one)."""
    return _PROCESS.current()


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or clear) this process's runtime (the worker's boot, and tests)."""
    _PROCESS.use(runtime)


def embed_texts(
    model: str, texts: list[str], options: dict[str, Any] | None = None
) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """Encode ``texts`` with ``model`` in this process's runtime (see ``Runtime.embed``)."""
    return get_runtime().embed(model, texts, options)
