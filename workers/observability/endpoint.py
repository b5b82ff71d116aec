"""The worker's ``/metrics`` HTTP endpoint: ``EMBEDFLEET_METRICS_PORT`` (0 or unset = off).

Started at worker boot (``workers.serving.boot``, from the typed settings), which passes
the runtime getter in:
the endpoint serves :class:`~workers.observability.metrics.WorkerMetrics` (subscribed to
the process's events) and :class:`~workers.observability.collector.RuntimeCollector`
on one registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import start_http_server

from tasks.contract.logs import event_logger
from workers.observability.collector import RuntimeCollector, RuntimeView
from workers.observability.events import Events
from workers.observability.metrics import WorkerMetrics

log = event_logger(__name__)


def build_metrics(runtime: Callable[[], RuntimeView]) -> WorkerMetrics:
    """The worker's metrics, with the scrape-time collector on the same registry."""
    metrics = WorkerMetrics(lambda model: runtime().config.get(model))
    metrics.registry.register(RuntimeCollector(runtime))
    return metrics


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` server: its metrics (subscribed to ``events``), the HTTP
    server and the thread serving it; :meth:`stop` closes the port."""

    metrics: WorkerMetrics
    events: Events
    server: Any  # prometheus_client's WSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        """Stop serving: the port is closed and the metrics leave the events."""
        self.events.unsubscribe(self.metrics)
        self.server.shutdown()  # returns once serve_forever has stopped
        self.server.server_close()
        self.thread.join(5)


def start_metrics(
    port: int,
    runtime: Callable[[], RuntimeView],
    events: Events,
    addr: str | None = None,
) -> MetricsEndpoint | None:
    """Serve ``/metrics`` on ``port`` and subscribe to ``events`` (the runtime's); None if
    the port is taken. The worker's boot calls it once and keeps what it returns (its
    ``close`` stops it)."""
    metrics = build_metrics(runtime)
    addr = addr or "0.0.0.0"  # all interfaces: a scraper in another container reaches it
    try:
        server, thread = start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as exc:  # a busy port must not stop the worker from serving
        log.error("event=metrics_disabled port=%d error=%r", port, str(exc))
        return None
    events.subscribe(metrics)
    log.info("event=metrics_started addr=%s port=%d path=/metrics", addr, port)
    return MetricsEndpoint(metrics, events, server, thread)
