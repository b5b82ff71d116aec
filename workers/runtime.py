"""The worker process's state: its config and model cache, and the encode entry point.

One :class:`Runtime` per worker process, built at boot (``workers.boot``) or on first
use. The chunk task calls :func:`embed_texts`; remote-control commands and the
watchdog reach the same runtime, since the threads pool keeps them in one process.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from workers.cache import ModelCache
from workers.config import ModelConfig, load_model_config, spec_version
from workers.errors import UnknownModelError
from workers.eviction import policy_name
from workers.memory import memory_budget_gb
from workers.models.base import generate_embeddings

log = logging.getLogger(__name__)


class Runtime:
    """Config + cache of one worker process."""

    def __init__(self, config: ModelConfig, budget_gb: float | None = None) -> None:
        self.config = config
        self.cache = ModelCache(
            config.models,
            budget_gb if budget_gb is not None else memory_budget_gb(),
            policy=policy_name(),
        )
        log.info(
            "event=runtime_ready source=%s config_hash=%s models=%s budget_gb=%.2f",
            config.source,
            config.config_hash,
            ",".join(config) or "-",
            self.cache.budget_gb,
        )

    def embed(self, model: str, texts: list[str]) -> tuple[np.ndarray, str]:
        """Encode ``texts`` with ``model``; returns (vectors, model version)."""
        spec = self.config.get(model)
        if spec is None:
            reason = self.config.errors.get(model)
            if reason:
                raise UnknownModelError(f"model {model!r} has an invalid config entry: {reason}")
            known = ", ".join(sorted(self.config)) or "none"
            raise UnknownModelError(f"model {model!r} is not configured; known: {known}")
        with self.cache.lease(model) as loaded:
            return generate_embeddings(loaded, texts), spec_version(spec)


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


def embed_texts(model: str, texts: list[str]) -> tuple[np.ndarray, str]:
    """Encode ``texts`` with ``model`` in this process's runtime."""
    return get_runtime().embed(model, texts)
