"""What the worker holds right now, read at each scrape: loaded models, their RAM
configured vs measured, leases, the worker's RSS and budget, and the config it runs (an
info metric, so a reload that did not reach a worker shows as two hashes in one fleet).

The runtime is reached through a getter passed in at boot (``workers.serving.boot``):
observability imports nothing of the serving side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.memory.readings import rss_gb

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

GB = 1024**3


class CacheView(Protocol):
    """What the collector reads of the model cache."""

    budget_gb: float

    def snapshot(self) -> list[dict[str, Any]]: ...

    def used_gb(self) -> float: ...


class ConfigView(Protocol):
    """What the collector reads of the config (``tasks.contract.spec.ModelConfig``)."""

    config_hash: str
    source: str

    def __iter__(self) -> Iterator[str]: ...

    def get(self, name: str) -> ModelSpec | None: ...


class RuntimeView(Protocol):
    """What observability reads of a worker's runtime (``workers.serving.runtime``)."""

    @property
    def cache(self) -> CacheView: ...

    @property
    def config(self) -> ConfigView: ...


class RuntimeCollector(Collector):
    """Gauges of the runtime that ``runtime()`` returns, computed at scrape time."""

    def __init__(
        self, runtime: Callable[[], RuntimeView], rss: Callable[[], float] = rss_gb
    ) -> None:
        self._runtime = runtime
        self._rss = rss

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime()
        cache = runtime.cache
        yield from model_gauges(cache.snapshot())
        yield GaugeMetricFamily(
            "embedfleet_worker_rss_bytes", "Resident memory of the worker", value=self._rss() * GB
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


def model_gauges(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Per-model gauges from the cache's snapshot rows."""
    loaded = GaugeMetricFamily("embedfleet_model_loaded", "1 if loaded", labels=["model"])
    ram_cfg = GaugeMetricFamily(
        "embedfleet_model_ram_config_bytes", "RAM the config says", labels=["model"]
    )
    ram_meas = GaugeMetricFamily(
        "embedfleet_model_ram_measured_bytes",
        "RAM measured when the model loaded (loaded local models only): what the runtime "
        "says it holds (method tensors|initializers|objects) or the RSS growth over the "
        "load (method rss), whichever is larger",
        labels=["model", "method"],
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
    for row in rows:
        name = row["name"]
        if row["loaded"]:
            precision.add_metric([name, str(row.get("precision") or "none")], 1.0)
        if row.get("probe_min_cosine") is not None:
            probe.add_metric([name], float(row["probe_min_cosine"]))
        loaded.add_metric([name], 1.0 if row["loaded"] else 0.0)
        ram_cfg.add_metric([name], float(row["ram_gb_config"]) * GB)
        if row.get("ram_gb_measured") is not None:
            method = str(row.get("ram_method") or "rss")
            ram_meas.add_metric([name, method], float(row["ram_gb_measured"]) * GB)
        leases.add_metric([name], float(row.get("leases", 0)))
    return [loaded, ram_cfg, ram_meas, leases, precision, probe]
