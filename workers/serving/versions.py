"""Model versions a worker can still serve, so a job never mixes two versions.

A job is pinned at submit time to the version of its model it resolved. When a reload
changes a model, the worker keeps the old spec here (a few per model); a chunk pinned
to it loads that old version under the cache key ``name@version``. A chunk pinned to a
version this worker never saw (its config source changed before the reload reached
it) is looked up in the config source itself. Anything else fails with
:class:`ModelChangedError`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tasks.contract.logs import event_logger
from tasks.contract.spec import ModelConfig, ModelSpec, spec_version
from workers.config.loader import load_model_config
from workers.errors import ModelChangedError

log = event_logger(__name__)

#: Old versions kept per model.
KEEP_PER_MODEL = 3
#: Seconds between two reads of the config source to find a pinned version.
SOURCE_LOOKUP_INTERVAL_S = 5.0


def unload_idle_old_versions(cache: Any, idle_s: float, now: float | None = None) -> list[str]:
    """Unload the ``name@version`` copies that no chunk leases and none used for
    ``idle_s`` seconds: the jobs pinned to them have finished here. Returns their names.

    A reload keeps the old version's *spec* (cheap) so a job pinned to it never mixes
    versions; its loaded *copy* is what costs memory, and is let go here rather than
    when memory runs short.
    """
    now = time.time() if now is None else now
    gone = [
        row["name"]
        for row in cache.snapshot()
        if "@" in row["name"]
        and row["loaded"]
        and not row["leases"]
        and now - (row["last_used"] or now) >= idle_s
    ]
    for name in gone:
        cache.unload(name, reason=f"old version idle for {idle_s:g} s: its jobs finished")
    return gone


class VersionBook:
    """Old versions of models, and the cache keys they load under."""

    def __init__(self, config: ModelConfig) -> None:
        self._old: dict[str, dict[str, ModelSpec]] = {}
        self._lock = threading.Lock()
        self._last_lookup = 0.0
        self._source = config.source

    def retire(self, old: ModelConfig, names: list[str]) -> None:
        """Remember the specs that a reload replaces or removes."""
        with self._lock:
            for name in names:
                if name in old:
                    versions = self._old.setdefault(name, {})
                    versions[spec_version(old[name])] = old[name]
                    while len(versions) > KEEP_PER_MODEL:
                        versions.pop(next(iter(versions)))

    def specs(self, config: ModelConfig) -> dict[str, ModelSpec]:
        """What the cache may load: current models plus ``name@version`` of old ones."""
        with self._lock:
            extra = {
                f"{name}@{version}": spec
                for name, versions in self._old.items()
                for version, spec in versions.items()
            }
        return {**extra, **config.models}

    def pinned(self, model: str, version: Any, current: ModelSpec) -> tuple[str, ModelSpec]:
        """The cache key and spec serving ``model`` at the pinned ``version`` (None: the
        ``current`` spec, under the model's own name; else ``name@version``)."""
        if not version or spec_version(current) == version:
            return model, current
        with self._lock:
            known = self._old.get(model, {}).get(version)
        if known is None:
            known = self._from_source(model, version)
        if known is None:
            raise ModelChangedError(
                f"model {model!r} changed during the job: the job is pinned to version "
                f"{version!r}, this worker serves {spec_version(current)!r} and can no longer "
                "load the pinned one; resubmit the job"
            )
        return f"{model}@{version}", known

    def _from_source(self, model: str, version: str) -> ModelSpec | None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_lookup < SOURCE_LOOKUP_INTERVAL_S:
                return None
            self._last_lookup = now
        try:
            fresh = load_model_config(self._source or None)
        except Exception as exc:  # the source may be briefly unreadable
            log.warning("event=version_lookup_failed model=%s error=%r", model, str(exc))
            return None
        spec = fresh.get(model)
        if spec is None or spec_version(spec) != version:
            return None
        with self._lock:
            self._old.setdefault(model, {})[version] = spec
        log.info("event=version_found_in_source model=%s version=%s", model, version)
        return spec
