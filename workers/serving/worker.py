"""What a worker process's boot builds and owns: :class:`Worker`.

``workers.serving.boot`` builds one at ``worker_init`` and hangs it on the app the worker
runs (``FleetApp.worker``); the remote-control commands (``workers.serving.control``)
find it there, through the ``state`` Celery hands them. Nothing here is a module global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.jobs.deliveries import Heartbeat
from tasks.jobs.reclaim import Reclaimer
from workers.memory.watchdog import MemoryWatchdog
from workers.observability.endpoint import MetricsEndpoint
from workers.observability.metrics import WorkerMetrics
from workers.serving.chunk_events import ChunkSignals
from workers.serving.publication import Publisher
from workers.serving.runtime import Runtime


@dataclass
class Worker:
    """What one worker process's boot built and owns; :meth:`close` stops it all."""

    runtime: Runtime
    signals: ChunkSignals
    publisher: Publisher | None = None
    heartbeat: Heartbeat | None = None
    reclaimer: Reclaimer | None = None
    endpoint: MetricsEndpoint | None = None
    watchdog: MemoryWatchdog | None = None

    @property
    def metrics(self) -> WorkerMetrics | None:
        """The metrics ``/metrics`` serves (None when the endpoint is off)."""
        return self.endpoint.metrics if self.endpoint is not None else None

    def start_watchdog(self) -> MemoryWatchdog:
        """Start the memory watchdog over the runtime's cache (once the worker is ready)."""
        if self.watchdog is None or not self.watchdog.is_alive():
            settings = self.runtime.settings
            self.watchdog = MemoryWatchdog(
                lambda: self.runtime.cache,
                settings.watchdog_interval_s,
                settings.memory_floor_gb,
                events=self.runtime.events,
            )
            self.watchdog.start()
        return self.watchdog

    def close(self) -> None:
        """A clean shutdown: leave the catalog, stop the threads and the ``/metrics``
        server, close the runtime. Also what a boot that failed half-way calls."""
        if self.publisher is not None:
            self.publisher.stop()
        for thread in (self.watchdog, self.heartbeat, self.reclaimer):
            if thread is not None:
                thread.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
        self.signals.disconnect()
        self.runtime.close()


def worker_of(celery_app: Any) -> Worker | None:
    """The :class:`Worker` booted on ``celery_app``, if any."""
    found = getattr(celery_app, "worker", None)
    return found if isinstance(found, Worker) else None
