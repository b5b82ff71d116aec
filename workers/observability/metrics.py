"""The worker's Prometheus metric families, and the event subscriber that moves them.

:class:`WorkerMetrics` is a :class:`~workers.observability.events.Subscriber`: the model
cache, the watchdog and the chunk path emit events (``workers.observability.events``)
and it counts them: chunks, texts, tokens and encode seconds by model; loads, load
seconds, evictions and unloads by model; watchdog shortages by reason. What the worker
holds *now* is read at scrape time by ``workers.observability.collector``; the HTTP
endpoint is ``workers.observability.endpoint``.

Sizes are in bytes, times in seconds, as Prometheus names want.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

from tasks.contract.logs import event_logger
from workers.observability.events import (
    ChunkFinished,
    MessageRefused,
    ModelEvicted,
    ModelLoaded,
    ModelUnloaded,
    Subscriber,
    WatchdogShort,
)
from workers.observability.token_counts import TokenCounter

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

log = event_logger(__name__)

#: Chunk run time buckets, seconds (a 128-text CPU chunk takes ~0.1-5 s).
ENCODE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: Model load time buckets, seconds.
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: ``model name -> its spec in the config the worker serves`` (None if not configured).
SpecLookup = Callable[[str], "ModelSpec | None"]


class WorkerMetrics(Subscriber):
    """The metric families of one worker process, on their own registry."""

    def __init__(self, spec_of: SpecLookup, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._spec_of = spec_of
        self._tokens = TokenCounter()
        r = self.registry
        # ``kind``: ``list`` or ``dataset`` chunks (workers.serving.chunk_events).
        self.texts = Counter(
            "embedfleet_texts", "Texts embedded, by chunk kind", ["model", "kind"], registry=r
        )
        self.tokens = Counter(
            "embedfleet_tokens",
            "Tokens embedded, special tokens in, after truncation; counted with the "
            "model's tokenizer where it has one on disk, else estimated (bytes/4+2)",
            ["model", "kind"],
            registry=r,
        )
        self.chunks = Counter(
            "embedfleet_chunks",
            "Chunks finished, by kind (list, dataset) and status: ok, failed, retry, "
            "cancelled, revoked",
            ["model", "kind", "status"],
            registry=r,
        )
        self.encode_seconds = Histogram(
            "embedfleet_encode_seconds",
            "Seconds one successful chunk ran in the worker, less a model load it ran itself",
            ["model", "kind"],
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
        self.refused = Counter(
            "embedfleet_messages_refused",
            "Queue messages refused without running (malformed envelope, body or headers)",
            registry=r,
        )
        self.watchdog_short = Counter(
            "embedfleet_watchdog_short",
            "Watchdog checks that found memory short, by reason (over budget, low "
            "available memory)",
            ["reason"],
            registry=r,
        )

    # -- hooks -----------------------------------------------------------------------
    def on_chunk_finished(self, event: ChunkFinished) -> None:
        model, kind = event.model, event.kind
        self.chunks.labels(model, kind, event.status).inc()
        if event.status != "ok":
            return
        texts = list(event.texts)
        self.texts.labels(model, kind).inc(len(texts))
        self.tokens.labels(model, kind).inc(self._count_tokens(model, texts))
        if event.seconds is not None:
            self.encode_seconds.labels(model, kind).observe(event.seconds)

    def on_model_loaded(self, event: ModelLoaded) -> None:
        self.loads.labels(event.model).inc()
        self.load_seconds.labels(event.model).observe(event.seconds)

    def on_model_evicted(self, event: ModelEvicted) -> None:
        self.evictions.labels(event.model).inc()

    def on_model_unloaded(self, event: ModelUnloaded) -> None:
        self.unloads.labels(event.model).inc()

    def on_watchdog_short(self, event: WatchdogShort) -> None:
        for reason in event.reasons:
            self.watchdog_short.labels(reason).inc()

    def on_message_refused(self, event: MessageRefused) -> None:
        self.refused.inc()

    def _count_tokens(self, model: str, texts: list[str]) -> int:
        try:
            return self._tokens.count(model, self._spec_of(model), texts)
        except Exception as exc:  # metrics never fail a chunk
            log.warning("event=token_count_failed model=%s error=%r", model, str(exc))
            return 0
