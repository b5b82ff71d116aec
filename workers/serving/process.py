"""This process's runtime: built at worker boot, reached by the task, control commands
and the seed's entry points (``workers.cache``)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from workers.config.loader import load_model_config
from workers.serving.runtime import Runtime

_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's runtime, built from ``load_model_config()`` on first use."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = Runtime(load_model_config())
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or clear) this process's runtime (boot code and tests)."""
    global _runtime
    _runtime = runtime


def embed_texts(
    model: str, texts: list[str], options: dict[str, Any] | None = None
) -> tuple[np.ndarray, str]:
    """Encode ``texts`` with ``model`` in this process's runtime."""
    return get_runtime().embed(model, texts, options)
