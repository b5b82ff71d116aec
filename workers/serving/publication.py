"""Publishing what this worker serves to the fleet catalog (``tasks.contract.catalog``).

At boot and after every reload the worker writes its config hash, models, versions and
aliases; a daemon thread refreshes the heartbeat every ``HEARTBEAT_S`` seconds (six times
in the worker's lapse, when that is shorter than ``LIVE_S``); a clean shutdown removes
the entry. A Redis that is briefly away costs a missed beat, never the
worker: every failure is logged and the next beat tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tasks.contract import catalog
from tasks.contract.logs import event_logger
from tasks.contract.spec import ModelConfig
from tasks.jobs import redis_full
from workers.models.prompts import published_facts
from workers.models.registry import cuts_windows
from workers.serving.runtime import Runtime

log = event_logger(__name__)


def worker_facts(config: ModelConfig) -> dict[str, dict[str, Any]]:
    """Per model, what producers check a job's options against beyond its entry: the
    prompts it declares and ``windows`` (its type cuts token windows, so it takes
    ``long_text=mean|windows``; left out when the type cannot be imported here)."""
    facts = published_facts(config)
    for name, spec in config.items():
        windows = cuts_windows(spec.type)
        if windows is not None:
            facts.setdefault(name, {})["windows"] = windows
    return facts


class Publisher:
    """Keeps one worker's catalog entry current."""

    def __init__(
        self,
        worker: str,
        client: Any,
        runtime: Callable[[], Runtime],
        interval_s: float,
        concurrency: int = 1,
        live_s: float = catalog.LIVE_S,
    ) -> None:
        self.worker = worker
        self.concurrency = concurrency
        self.client = client
        self.runtime = runtime
        self.interval_s = interval_s
        self.live_s = live_s
        self._stop = threading.Event()
        # A beat (or a publish) and stop's forget never interleave: once stopped, the
        # entry stays gone.
        self._lock = threading.Lock()

    def publish(self) -> bool:
        """Write the entry now, even on a full Redis; False (logged) when Redis cannot be
        reached, or when the publisher was stopped."""
        with self._lock:
            return not self._stop.is_set() and self._publish()

    def _publish(self) -> bool:
        runtime = self.runtime()
        try:
            catalog.publish(
                self.client,
                self.worker,
                runtime.config,
                runtime.served_models(),
                runtime.encode_costs.stats(),
                worker_facts(runtime.config),
                self.concurrency,
                self.live_s,
                write=redis_full.hset,
            )
        except Exception as exc:  # Redis away: the next beat publishes again
            log.warning("event=catalog_publish_failed worker=%s error=%r", self.worker, str(exc))
            return False
        log.info(
            "event=catalog_published worker=%s config_hash=%s",
            self.worker,
            runtime.config.config_hash,
        )
        return True

    def beat(self) -> None:
        """Refresh the heartbeat (publishing again if the entry is missing); nothing once
        stopped."""
        with self._lock:
            if self._stop.is_set():
                return
            try:
                costs = self.runtime().encode_costs.stats()
                if catalog.heartbeat(self.client, self.worker, costs, redis_full.hset_if_exists):
                    return
            except Exception as exc:
                log.warning(
                    "event=catalog_heartbeat_failed worker=%s error=%r", self.worker, str(exc)
                )
                return
            self._publish()

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def stop(self) -> None:
        """Stop beating and remove the entry (a clean shutdown)."""
        self._stop.set()
        try:
            with self._lock:  # after a beat under way, never before it
                catalog.forget(self.client, self.worker)
        except Exception as exc:
            log.warning("event=catalog_forget_failed worker=%s error=%r", self.worker, str(exc))


def start_publisher(
    worker: str,
    client: Any,
    runtime: Callable[[], Runtime],
    concurrency: int = 1,
    lapse_s: float = catalog.LIVE_S,
) -> Publisher:
    """Publish now and keep the heartbeat going in a daemon thread; the worker's boot
    keeps the :class:`Publisher` (a reload publishes through it, shutdown stops it).
    ``lapse_s``: the worker's lapse; under :data:`catalog.LIVE_S` the entry says so
    (``live_s``) and beats six times in it, so readers see a dead worker as soon."""
    live_s = min(lapse_s, catalog.LIVE_S)
    interval_s = catalog.HEARTBEAT_S * live_s / catalog.LIVE_S
    publisher = Publisher(worker, client, runtime, interval_s, concurrency, live_s)
    publisher.publish()
    threading.Thread(target=publisher.run, name="embedfleet-catalog", daemon=True).start()
    return publisher
