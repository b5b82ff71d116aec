"""Opt-in cProfile of a worker, for benchmarks: ``EMBEDFLEET_PROFILE=/path/prefix``.

cProfile follows one thread, so the worker gets two profiles:

- ``<prefix>.pool.pstats``: every chunk task from ``task_prerun`` to ``task_postrun``
  in the pool threads (validation, delivery counting, the embedding cache, the encode,
  storing the result, marking the chunk done), one profiler per thread, merged;
- ``<prefix>.main.pstats``: the main thread from ``worker_ready`` to shutdown (kombu's
  consumer loop: reading queue items, decoding envelopes, dispatching to the pool,
  events, acks).

Written at ``worker_shutdown``. Off (nothing connected) when the variable is unset.
"""

from __future__ import annotations

import cProfile
import pstats
import threading
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown

from tasks.contract.errors import ConfigError
from tasks.contract.logs import event_logger

log = event_logger(__name__)


class WorkerProfiler:
    """Per-thread profilers around chunk tasks, plus one for the main thread."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._local = threading.local()
        self._pool: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._main: cProfile.Profile | None = None

    def on_prerun(self, **_: Any) -> None:
        profile = getattr(self._local, "profile", None)
        if profile is None:
            profile = self._local.profile = cProfile.Profile()
            with self._lock:
                self._pool.append(profile)
        profile.enable()

    def on_postrun(self, **_: Any) -> None:
        profile = getattr(self._local, "profile", None)
        if profile is not None:
            profile.disable()

    def on_ready(self, **_: Any) -> None:
        self._main = cProfile.Profile()
        self._main.enable()

    def on_shutdown(self, **_: Any) -> None:
        if self._main is not None:
            self._main.disable()
            self._main.dump_stats(f"{self.prefix}.main.pstats")
        with self._lock:
            profiles = list(self._pool)
        if profiles:
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
            stats.dump_stats(f"{self.prefix}.pool.pstats")
        log.info("event=profile_written prefix=%s pool_threads=%d", self.prefix, len(profiles))


def start_profiling(prefix: str) -> WorkerProfiler | None:
    """Connect a :class:`WorkerProfiler` writing to ``prefix`` (settings.profile,
    ``EMBEDFLEET_PROFILE``); nothing when it is empty."""
    if not prefix:
        return None
    folder = Path(prefix).parent
    if not folder.is_dir():  # found now, not at shutdown when the profiles are written
        raise ConfigError(f"EMBEDFLEET_PROFILE={prefix!r}: no folder {str(folder)!r}")
    profiler = WorkerProfiler(prefix)
    task_prerun.connect(profiler.on_prerun, weak=False)
    task_postrun.connect(profiler.on_postrun, weak=False)
    worker_ready.connect(profiler.on_ready, weak=False)
    worker_shutdown.connect(profiler.on_shutdown, weak=False)
    log.info("event=profiling prefix=%s", prefix)
    return profiler
