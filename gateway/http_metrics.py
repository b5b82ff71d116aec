"""``/metrics`` of the gateway: its HTTP requests and latency by route and status, and
the fleet's numbers (``gateway.fleet_metrics``), in one registry per app."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Latency buckets (seconds): an embeddings request is tens of ms to tens of seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class HttpMetrics:
    """ASGI middleware counting requests by route template (``/v1/files/{file_id}``, so
    ids never become labels), method and status."""

    def __init__(self, app: Any, registry: CollectorRegistry, static_paths: set[str]) -> None:
        self.app = app
        self.static_paths = static_paths
        self.requests = Counter(
            "embedfleet_gateway_requests",
            "HTTP requests answered by the gateway",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "embedfleet_gateway_request_seconds",
            "seconds from a request's arrival to its answer's start",
            ["route", "method", "status"],
            buckets=BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        answered: float | None = None

        async def watched(message: dict) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = int(message["status"])
                answered = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                route = scope["path"] if scope["path"] in self.static_paths else "unmatched"
            labels = (route, scope["method"], str(status))
            self.requests.labels(*labels).inc()
            self.latency.labels(*labels).observe((answered or time.perf_counter()) - started)
