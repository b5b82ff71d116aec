"""The worker's ``/metrics`` HTTP endpoint: ``EMBEDFLEET_METRICS_PORT`` (0 or unset = off).

Started at worker boot (``workers.serving.boot``), which passes the runtime getter in:
the endpoint serves :class:`~workers.observability.metrics.WorkerMetrics` (subscribed to
the process's events) and :class:`~workers.observability.collector.RuntimeCollector`
on one registry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from prometheus_client import start_http_server

from workers.observability.collector import RuntimeCollector, RuntimeView
from workers.observability.events import Events
from workers.observability.hub import process_events
from workers.observability.metrics import WorkerMetrics

log = logging.getLogger(__name__)

#: Env var: the port the worker serves ``/metrics`` on (0 = no endpoint).
PORT_ENV = "EMBEDFLEET_METRICS_PORT"
#: Env var: the address it listens on (all interfaces, so a scraper in another
#: container reaches it).
ADDR_ENV = "EMBEDFLEET_METRICS_ADDR"

_metrics: WorkerMetrics | None = None


def metrics_port() -> int:
    """``EMBEDFLEET_METRICS_PORT`` as an int; 0 when unset or off."""
    raw = os.environ.get(PORT_ENV, "").strip() or "0"
    try:
        port = int(raw)
    except ValueError:
        log.error("event=metrics_disabled reason=%r", f"{PORT_ENV}={raw!r} is not a port")
        return 0
    return port if 0 < port < 65536 else 0


def build_metrics(runtime: Callable[[], RuntimeView]) -> WorkerMetrics:
    """The worker's metrics, with the scrape-time collector on the same registry."""
    metrics = WorkerMetrics(lambda model: runtime().config.get(model))
    metrics.registry.register(RuntimeCollector(runtime))
    return metrics


def start_metrics(
    port: int,
    runtime: Callable[[], RuntimeView],
    addr: str | None = None,
    events: Events | None = None,
) -> WorkerMetrics | None:
    """Serve ``/metrics`` on ``port`` and subscribe to the events; None if the port is taken."""
    global _metrics
    if _metrics is not None:
        return _metrics
    metrics = build_metrics(runtime)
    addr = addr or os.environ.get(ADDR_ENV, "0.0.0.0")
    try:
        start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as exc:  # a busy port must not stop the worker from serving
        log.error("event=metrics_disabled port=%d error=%r", port, str(exc))
        return None
    (events if events is not None else process_events()).subscribe(metrics)
    _metrics = metrics
    log.info("event=metrics_started addr=%s port=%d path=/metrics", addr, port)
    return metrics


def start_metrics_from_env(runtime: Callable[[], RuntimeView]) -> WorkerMetrics | None:
    """Start the endpoint when ``EMBEDFLEET_METRICS_PORT`` names a port (worker boot)."""
    port = metrics_port()
    return start_metrics(port, runtime) if port else None
