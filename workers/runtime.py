"""The worker process's state: its config and model cache, and the encode entry point.

One :class:`Runtime` per worker process, built at boot (``workers.boot``) or on first
use. The chunk task calls :func:`embed_texts`; remote-control commands (reload) and the
watchdog reach the same runtime, since the threads pool keeps them in one process.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.cache import ModelCache
from workers.config import ModelConfig, load_model_config, spec_version
from workers.embedding_cache import EmbeddingCache, cache_enabled, embed_with_cache
from workers.errors import ConfigError, UnknownModelError
from workers.eviction import policy_name
from workers.memory import memory_budget_gb
from workers.models.base import generate_embeddings
from workers.versions import VersionBook

log = logging.getLogger(__name__)

#: Env var naming the models a worker serves: ``all`` or a comma-separated list.
SELECTION_ENV = "EMBEDFLEET_WORKER_MODELS"


def selected_models(selection: str) -> list[str] | None:
    """``--models`` / ``EMBEDFLEET_WORKER_MODELS``: None for ``all``, else the names."""
    if selection.strip() == "all":
        return None
    return [m.strip() for m in selection.split(",") if m.strip()]


@dataclass
class ConfigChange:
    """What a reload changed."""

    config_hash: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


class Runtime:
    """Config + cache of one worker process."""

    def __init__(self, config: ModelConfig, budget_gb: float | None = None) -> None:
        self.config = config
        self.cache = ModelCache(
            config.models,
            budget_gb if budget_gb is not None else memory_budget_gb(),
            policy=policy_name(),
        )
        self._reload_lock = threading.Lock()
        self.versions = VersionBook(config)
        self.embedding_cache: EmbeddingCache | None = None
        if cache_enabled():
            from tasks.app import app

            self.embedding_cache = EmbeddingCache(app.backend.client)
        log.info(
            "event=runtime_ready source=%s config_hash=%s models=%s budget_gb=%.2f",
            config.source,
            config.config_hash,
            ",".join(config) or "-",
            self.cache.budget_gb,
        )

    def embed(
        self, model: str, texts: list[str], options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, str]:
        """Encode ``texts`` with ``model``; returns (vectors, version used).

        ``options["version"]`` pins the model version the job resolved at submit time: a
        worker serving another version loads the pinned one if it still can (a version
        it served before a reload, or one its config source holds now), else the chunk
        fails with :class:`ModelChangedError`; versions are never mixed in a job.
        ``options["cache"]`` (default true) uses the fleet-wide embedding cache.
        """
        options = options or {}
        if model not in self.config:
            reason = self.config.errors.get(model)
            if reason:
                raise UnknownModelError(f"model {model!r} has an invalid config entry: {reason}")
            known = ", ".join(sorted(self.config)) or "none"
            raise UnknownModelError(f"model {model!r} is not configured; known: {known}")
        key = self.versions.cache_key(model, options.get("version"), self)
        with self.cache.lease(key) as loaded:
            version = spec_version(loaded.spec)
            if options.get("cache", True) and self.embedding_cache is not None:
                vectors = embed_with_cache(
                    self.embedding_cache,
                    model,
                    version,
                    texts,
                    lambda misses: generate_embeddings(loaded, misses),
                )
            else:
                vectors = generate_embeddings(loaded, texts)
            return vectors, version

    # -- serving selection ------------------------------------------------------------
    def served_models(self, config: ModelConfig | None = None) -> list[str]:
        """Models this worker consumes under ``config``: all, or the selected ones."""
        config = config or self.config
        wanted = selected_models(os.environ.get(SELECTION_ENV, "all"))
        return sorted(config) if wanted is None else sorted(m for m in config if m in wanted)

    # -- reload ----------------------------------------------------------------------
    def reload(self) -> tuple[ConfigChange, ModelConfig]:
        """Re-read the config source and apply the difference.

        All or nothing: if the source cannot be read or any entry is invalid, raise
        :class:`ConfigError` and keep serving the old config. Removed models are unloaded
        once their leases end; for a changed model, running tasks finish on the old
        instance and new tasks load the new one.
        """
        with self._reload_lock:
            new = load_model_config(self.config.source or None)
            if new.errors:
                raise ConfigError("; ".join(new.errors[name] for name in sorted(new.errors)))
            old = self.config
            change = ConfigChange(
                config_hash=new.config_hash,
                added=sorted(set(new) - set(old)),
                removed=sorted(set(old) - set(new)),
                changed=sorted(n for n in set(new) & set(old) if new[n] != old[n]),
            )
            self.versions.retire(old, change.changed + change.removed)
            self.config = new
            self.cache.specs = self.versions.specs(new)
            for name in change.removed:
                self.cache.unload(name, reason="removed by reload")
            for name in change.changed:
                self.cache.unload(name, reason="changed by reload")
            log.info(
                "event=config_reloaded source=%s config_hash=%s old_hash=%s added=%s "
                "removed=%s changed=%s",
                new.source,
                new.config_hash,
                old.config_hash,
                ",".join(change.added) or "-",
                ",".join(change.removed) or "-",
                ",".join(change.changed) or "-",
            )
            return change, old

    def preload(self, names: list[str] | None = None) -> None:
        """Load the served models marked ``preload: true`` (or just ``names``)."""
        served = set(self.served_models())
        for name, spec in list(self.config.items()):
            if name not in served or not spec.preload or (names is not None and name not in names):
                continue
            try:
                self.cache.load(name)
            except Exception as exc:  # a bad model must not stop the worker
                log.error("event=preload_failed model=%s error=%r", name, str(exc))


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
