"""The fleet's own numbers, read from Redis at scrape time (one collector, no state).

- ``embedfleet_queue_depth{model}``: chunks waiting on the model's queue, summed over
  every list kombu makes of it. kombu's Redis transport splits a queue with priorities
  into one list per step (``kombu.transport.redis.Channel._q_for_pri``): step 0 is
  ``embed.<model>`` itself, step N is ``embed.<model>`` + ``Channel.sep`` (``\\x06\\x16``)
  + N, for N in ``PRIORITY_STEPS`` (0, 3, 6, 9 unless ``priority_steps`` is set in the
  transport options). Dataset chunks travel at step 9, so a reader of ``embed.<model>``
  alone undercounts: this is the number to scale workers on.
- ``embedfleet_chunks_in_flight{model}``: delivered, not yet acknowledged (kombu's
  ``unacked`` hash).
- ``embedfleet_jobs{kind,state}``: the recent jobs (``tasks.jobs.jobstore.JOBS_KEY``).
- ``embedfleet_oldest_waiting_chunk_seconds{model}``: age of the oldest chunk still
  queued (its sender's ``embedfleet_sent`` header).
- ``embedfleet_live_workers{model}``: workers with a fresh heartbeat serving the model.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks.contract import catalog
from tasks.jobs import datasets, jobstore
from tasks.routing import QUEUE_PREFIX, SENT_HEADER, queue_for


def priority_lists(queue: str, steps: list[int] | None = None) -> list[str]:
    """Every Redis list kombu keeps for ``queue`` (one per priority step)."""
    return [
        queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in steps or PRIORITY_STEPS
    ]


class FleetCollector(Collector):
    """Reads the fleet's state from ``redis`` at each scrape."""

    def __init__(self, redis: Any, steps: list[int] | None = None) -> None:
        self.redis = redis
        self.steps = steps or PRIORITY_STEPS

    def models(self, jobs: list[tuple[str, Any]]) -> list[str]:
        """The catalog's models, those workers serve, and those of recent jobs (a model
        nobody serves any more may still have chunks waiting)."""
        found = catalog.read(self.redis)
        served = {name for raw in self.redis.hvals(catalog.CATALOG_KEY) for name in _served(raw)}
        of_jobs = {answer[0][4].decode() for _, answer in jobs if answer[0][4]}
        return sorted(set(found.models) | served | of_jobs)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = self._recent_jobs()
        models = self.models(jobs)
        yield from self._queues(models)
        yield self._in_flight()
        yield self._jobs(jobs)
        yield self._live(models)

    def _recent_jobs(self) -> list[tuple[str, Any]]:
        ids = jobstore.recent(self.redis, jobstore.JOBS_INDEX_SIZE)
        pipe = self.redis.pipeline()
        for job_id in ids:
            key = jobstore.PREFIX + job_id
            pipe.hmget(key, ["kind", "total", "cancelled", "started", "model"])
            pipe.scard(key + ":done")
            pipe.hlen(key + ":failed")
        answers = pipe.execute()
        return [(job_id, answers[3 * i : 3 * i + 3]) for i, job_id in enumerate(ids)]

    def _queues(self, models: list[str]) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "embedfleet_queue_depth",
            "chunks waiting on the model's queue, every priority list summed",
            labels=["model"],
        )
        oldest = GaugeMetricFamily(
            "embedfleet_oldest_waiting_chunk_seconds",
            "seconds the oldest chunk still queued for the model has waited",
            labels=["model"],
        )
        now = time.time()
        for model in models:
            lists = priority_lists(queue_for(model), self.steps)
            pipe = self.redis.pipeline()
            for name in lists:
                pipe.llen(name)
                pipe.lindex(name, -1)  # kombu LPUSHes and BRPOPs: the oldest is last
            answers = pipe.execute()
            depth.add_metric([model], sum(answers[0::2]))
            sent = [t for t in map(_sent, answers[1::2]) if t is not None]
            oldest.add_metric([model], max(0.0, now - min(sent)) if sent else 0.0)
        yield depth
        yield oldest

    def _in_flight(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "embedfleet_chunks_in_flight",
            "chunks delivered to a worker and not yet acknowledged",
            labels=["model"],
        )
        counts: Counter[str] = Counter()
        for raw in self.redis.hvals(Channel.unacked_key):
            try:
                routing_key = json.loads(raw)[2]
            except (ValueError, TypeError, IndexError):
                continue
            if isinstance(routing_key, str) and routing_key.startswith(QUEUE_PREFIX):
                counts[routing_key.removeprefix(QUEUE_PREFIX)] += 1
        for model, count in sorted(counts.items()):
            family.add_metric([model], count)
        return family

    def _jobs(self, jobs: list[tuple[str, Any]]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "embedfleet_jobs",
            "recent jobs (the last 1,000) by kind and state",
            labels=["kind", "state"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        for job_id, ((kind, total, cancelled, started, _), done, failed) in jobs:
            if total is None:
                continue  # expired or deleted
            if kind == b"dataset":
                record = datasets.load(self.redis, job_id)
                if record is None:
                    continue
                counts["dataset", datasets.state_of(record, failed)] += 1
                continue
            state = jobstore.state_of(
                int(total), done, failed, cancelled == b"1", started is not None
            )
            counts["list", state] += 1
        for (kind, state), count in sorted(counts.items()):
            family.add_metric([kind, state], count)
        return family

    def _live(self, models: list[str]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "embedfleet_live_workers",
            "workers with a fresh heartbeat that serve the model",
            labels=["model"],
        )
        now = time.time()
        for model in models:
            family.add_metric([model], len(catalog.live_workers(self.redis, model, now)))
        return family


def _served(raw: bytes) -> list[str]:
    try:
        return [str(m) for m in json.loads(raw).get("served") or []]
    except (ValueError, AttributeError):
        return []


def _sent(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)["headers"].get(SENT_HEADER)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
