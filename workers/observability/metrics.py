"""The worker's Prometheus endpoint: ``EMBEDFLEET_METRICS_PORT`` (0 or unset = off).

Three sources, none of which the cache or the chunk task needs to know about:

- Celery signals (``task_prerun`` / ``task_postrun`` / ``task_revoked``) count chunks,
  texts and tokens and time each chunk, by model.
- The cache's own ``event=model_loaded|model_evicted|model_unloaded`` log records, heard
  by a logging handler, count loads, load seconds, evictions and unloads by model: the
  metrics follow exactly what the log lines report. (Renaming those events means
  changing ``EVICT_EVENTS`` here; tests/integration/test_metrics.py catches a drift.)
- A collector reads the runtime at scrape time: loaded models, RAM configured vs
  measured, leases, the worker's RSS and budget, and the config hash (an info metric,
  so a reload that did not reach a worker shows as two hashes in one fleet).

Sizes are in bytes, times in seconds, as Prometheus names want.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from celery.signals import task_postrun, task_prerun, task_revoked
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from tasks.logs import parse_pairs
from tasks.routing import EMBED_TASK
from workers.observability.token_counts import count_tokens

log = logging.getLogger(__name__)

#: Env var: the port the worker serves ``/metrics`` on (0 = no endpoint).
PORT_ENV = "EMBEDFLEET_METRICS_PORT"
#: Env var: the address it listens on (all interfaces, so a scraper in another
#: container reaches it).
ADDR_ENV = "EMBEDFLEET_METRICS_ADDR"
GB = 1024**3
#: Chunk run time buckets, seconds (a 128-text CPU chunk takes ~0.1-5 s).
ENCODE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: Model load time buckets, seconds.
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: The logger whose ``event=`` records carry model loads and unloads.
CACHE_LOGGER = "workers.memory.model_cache"
#: Its events that mean "unloaded to make room" (one line per model evicted).
EVICT_EVENTS = frozenset({"model_evicted", "model_evict"})


class WorkerMetrics:
    """The metric families of one worker process, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.texts = Counter("embedfleet_texts", "Texts embedded", ["model"], registry=r)
        self.tokens = Counter(
            "embedfleet_tokens",
            "Tokens embedded, special tokens in, after truncation; counted with the "
            "model's tokenizer where it has one on disk, else estimated (bytes/4+2)",
            ["model"],
            registry=r,
        )
        self.chunks = Counter(
            "embedfleet_chunks",
            "Chunks finished, by status: ok, failed, retry, cancelled, revoked",
            ["model", "status"],
            registry=r,
        )
        self.encode_seconds = Histogram(
            "embedfleet_encode_seconds",
            "Seconds one successful chunk ran in the worker, less a model load it ran itself",
            ["model"],
            buckets=ENCODE_BUCKETS,
            registry=r,
        )
        self.loads = Counter("embedfleet_model_loads", "Model loads", ["model"], registry=r)
        self.load_seconds = Histogram(
            "embedfleet_model_load_seconds",
            "Seconds a model took to load",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.evictions = Counter(
            "embedfleet_model_evictions",
            "Models unloaded to make room (budget or memory watchdog)",
            ["model"],
            registry=r,
        )
        self.unloads = Counter(
            "embedfleet_model_unloads",
            "Models unloaded other than by eviction (a reload removed or replaced them)",
            ["model"],
            registry=r,
        )
        r.register(RuntimeCollector())
        self._started: dict[str, float] = {}  # task id -> perf_counter at prerun
        self._local = threading.local()  # load seconds of the running task's thread

    # -- celery signals ------------------------------------------------------------------
    def on_prerun(self, task_id: str = "", task: Any = None, **_: Any) -> None:
        if getattr(task, "name", None) != EMBED_TASK:
            return
        self._started[task_id] = time.perf_counter()
        self._local.load_seconds = 0.0

    def on_postrun(
        self,
        task_id: str = "",
        task: Any = None,
        kwargs: dict[str, Any] | None = None,
        retval: Any = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        if getattr(task, "name", None) != EMBED_TASK:
            return
        started = self._started.pop(task_id, None)
        kwargs = kwargs or {}
        model = str(kwargs.get("model") or "unknown")
        if state == "SUCCESS":
            texts = kwargs.get("texts") or []
            self.chunks.labels(model, "ok").inc()
            self.texts.labels(model).inc(len(texts))
            self.tokens.labels(model).inc(self._count_tokens(model, texts))
            if started is not None:
                waited = getattr(self._local, "load_seconds", 0.0)
                seconds = max(0.0, time.perf_counter() - started - waited)
                self.encode_seconds.labels(model).observe(seconds)
        elif state == "RETRY":
            self.chunks.labels(model, "retry").inc()
        elif type(retval).__name__ == "JobCancelled":
            self.chunks.labels(model, "cancelled").inc()
        else:
            self.chunks.labels(model, "failed").inc()

    def on_revoked(self, request: Any = None, **_: Any) -> None:
        if getattr(request, "name", None) != EMBED_TASK:
            return
        kwargs = getattr(request, "kwargs", None) or {}
        self.chunks.labels(str(kwargs.get("model") or "unknown"), "revoked").inc()

    def _count_tokens(self, model: str, texts: list[str]) -> int:
        try:
            return count_tokens(model, texts)
        except Exception as exc:  # metrics never fail a chunk
            log.warning("event=token_count_failed model=%s error=%r", model, str(exc))
            return 0

    # -- cache events --------------------------------------------------------------------
    def on_cache_event(self, record: logging.LogRecord) -> None:
        fields = parse_pairs(record.getMessage()) or {}
        event, model = fields.get("event"), str(fields.get("model", "unknown"))
        if event == "model_loaded":
            seconds = float(fields.get("seconds", 0.0))
            self.loads.labels(model).inc()
            self.load_seconds.labels(model).observe(seconds)
            # A load runs in the thread of the task that asked for it.
            self._local.load_seconds = getattr(self._local, "load_seconds", 0.0) + seconds
        elif event in EVICT_EVENTS:
            self.evictions.labels(model).inc()
        elif event == "model_unloaded":
            self.unloads.labels(model).inc()


class RuntimeCollector(Collector):
    """What the worker holds right now, read from its runtime at each scrape."""

    def collect(self) -> Iterator[Metric]:
        from workers.memory.readings import rss_gb
        from workers.serving.process import get_runtime

        runtime = get_runtime()
        cache = runtime.cache
        loaded = GaugeMetricFamily("embedfleet_model_loaded", "1 if loaded", labels=["model"])
        ram_cfg = GaugeMetricFamily(
            "embedfleet_model_ram_config_bytes", "RAM the config says", labels=["model"]
        )
        ram_meas = GaugeMetricFamily(
            "embedfleet_model_ram_measured_bytes",
            "RSS growth measured when the model loaded (loaded models only)",
            labels=["model"],
        )
        leases = GaugeMetricFamily(
            "embedfleet_model_leases", "Tasks encoding with the model now", labels=["model"]
        )
        precision = GaugeMetricFamily(
            "embedfleet_model_precision",
            "1 per loaded model, labelled with the precision it runs in (remote: none)",
            labels=["model", "precision"],
        )
        probe = GaugeMetricFamily(
            "embedfleet_model_probe_min_cosine",
            "Lowest cosine to fp32 over the fidelity probe at load (models that ran it)",
            labels=["model"],
        )
        for row in cache.snapshot():
            name = row["name"]
            if row["loaded"]:
                precision.add_metric([name, str(row.get("precision") or "none")], 1.0)
            if row.get("probe_min_cosine") is not None:
                probe.add_metric([name], float(row["probe_min_cosine"]))
            loaded.add_metric([name], 1.0 if row["loaded"] else 0.0)
            ram_cfg.add_metric([name], float(row["ram_gb_config"]) * GB)
            if row.get("ram_gb_measured") is not None:
                ram_meas.add_metric([name], float(row["ram_gb_measured"]) * GB)
            leases.add_metric([name], float(row.get("leases", 0)))
        yield from (loaded, ram_cfg, ram_meas, leases, precision, probe)
        yield GaugeMetricFamily(
            "embedfleet_worker_rss_bytes", "Resident memory of the worker", value=rss_gb() * GB
        )
        yield GaugeMetricFamily(
            "embedfleet_worker_memory_budget_bytes",
            "Model memory budget (EMBEDFLEET_MEMORY_LIMIT_GB / cgroup limit / 80% of RAM)",
            value=cache.budget_gb * GB,
        )
        yield GaugeMetricFamily(
            "embedfleet_worker_models_bytes",
            "RAM accounted to loaded models (configured or measured, whichever is larger)",
            value=cache.used_gb() * GB,
        )
        info = InfoMetricFamily("embedfleet_config", "The model config this worker runs")
        info.add_metric(
            [],
            {
                "config_hash": str(runtime.config.config_hash),
                "source": str(runtime.config.source),
                "models": ",".join(sorted(runtime.config)),
            },
        )
        yield info


class _CacheEvents(logging.Handler):
    """Feeds the cache's log records to :meth:`WorkerMetrics.on_cache_event`."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        super().__init__(level=logging.INFO)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.metrics.on_cache_event(record)
        except Exception:  # a metrics bug must not break logging
            self.handleError(record)


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


def start_metrics(port: int, addr: str | None = None) -> WorkerMetrics | None:
    """Serve ``/metrics`` on ``port`` and hook the signals; None if the port is taken."""
    global _metrics
    if _metrics is not None:
        return _metrics
    metrics = WorkerMetrics()
    addr = addr or os.environ.get(ADDR_ENV, "0.0.0.0")
    try:
        start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as exc:  # a busy port must not stop the worker from serving
        log.error("event=metrics_disabled port=%d error=%r", port, str(exc))
        return None
    task_prerun.connect(metrics.on_prerun, weak=False)
    task_postrun.connect(metrics.on_postrun, weak=False)
    task_revoked.connect(metrics.on_revoked, weak=False)
    cache_log = logging.getLogger(CACHE_LOGGER)
    cache_log.addHandler(_CacheEvents(metrics))
    if not cache_log.isEnabledFor(logging.INFO):
        cache_log.setLevel(logging.INFO)  # the load/unload counters follow its INFO records
    _metrics = metrics
    log.info("event=metrics_started addr=%s port=%d path=/metrics", addr, port)
    return metrics


def start_metrics_from_env() -> WorkerMetrics | None:
    """Start the endpoint when ``EMBEDFLEET_METRICS_PORT`` names a port (worker boot)."""
    port = metrics_port()
    return start_metrics(port) if port else None
