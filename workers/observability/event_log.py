"""The log subscriber: one ``event=<name> key=value ...`` line per event.

Each line goes to the logger of the module that made the decision (the model cache,
loading, the watchdog), so ``logger=`` in a line still says where to look, and the
lines keep the fields and formats they had when those modules logged directly.
Every line also carries the event's own fields (``extra={"fields": ...}``): JSON log
lines are written from them (``tasks.contract.logs.JsonFormatter``), typed as the
event types them, without reading the text back.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from workers.observability.events import (
    ModelEvicted,
    ModelLoaded,
    ModelRetired,
    ModelStillReferenced,
    ModelUnloaded,
    Subscriber,
    WatchdogRecovered,
    WatchdogShort,
    WatchdogStarted,
)

#: Loggers named for the modules whose decisions they report.
CACHE_LOGGER = "workers.memory.model_cache"
LOADING_LOGGER = "workers.memory.loading"
WATCHDOG_LOGGER = "workers.memory.watchdog"


def fields(event: Any, **derived: Any) -> dict[str, Any]:
    """``extra=`` for the log call of ``event``: its name and typed fields (plus
    ``derived`` ones the line shows, such as ``rss_gb_freed``)."""
    return {"fields": {"event": event.name, **dataclasses.asdict(event), **derived}}


class LogSubscriber(Subscriber):
    """Writes every model-memory event as one key=value log line."""

    def __init__(self) -> None:
        self.cache_log = logging.getLogger(CACHE_LOGGER)
        self.loading_log = logging.getLogger(LOADING_LOGGER)
        self.watchdog_log = logging.getLogger(WATCHDOG_LOGGER)

    def on_model_loaded(self, e: ModelLoaded) -> None:
        self.cache_log.info(
            "event=model_loaded model=%s type=%s seconds=%.2f ram_gb_config=%.3f "
            "ram_gb_measured=%.3f ram_method=%s ram_gb=%.3f used_gb_before=%.3f "
            "used_gb_after=%.3f budget_gb=%.3f rss_gb_before=%.3f rss_gb_after=%.3f "
            "models_loaded=%d precision=%s",
            e.model,
            e.type,
            e.seconds,
            e.ram_gb_config,
            e.ram_gb_measured,
            e.ram_method,
            e.ram_gb,
            e.used_gb_before,
            e.used_gb_after,
            e.budget_gb,
            e.rss_gb_before,
            e.rss_gb_after,
            e.models_loaded,
            e.precision or "-",
            extra=fields(e),
        )

    def on_model_evicted(self, e: ModelEvicted) -> None:
        self.cache_log.info(
            "event=model_evicted model=%s reason=%r ram_gb=%.3f ram_gb_measured=%.3f "
            "policy=%s required_gb=%.3f used_gb_before=%.3f used_gb_after=%.3f "
            "budget_gb=%.3f rss_gb_before=%.3f rss_gb_after=%.3f rss_gb_freed=%.3f",
            e.model,
            e.reason,
            e.ram_gb,
            e.ram_gb_measured,
            e.policy,
            e.required_gb,
            e.used_gb_before,
            e.used_gb_after,
            e.budget_gb,
            e.rss_gb_before,
            e.rss_gb_after,
            e.rss_gb_before - e.rss_gb_after,
            extra=fields(e, rss_gb_freed=e.rss_gb_before - e.rss_gb_after),
        )

    def on_model_unloaded(self, e: ModelUnloaded) -> None:
        self.cache_log.info(
            "event=model_unloaded model=%s reason=%r ram_gb=%.3f ram_gb_measured=%.3f "
            "rss_gb_before=%.3f rss_gb_after=%.3f rss_gb_freed=%.3f",
            e.model,
            e.reason,
            e.ram_gb,
            e.ram_gb_measured,
            e.rss_gb_before,
            e.rss_gb_after,
            e.rss_gb_before - e.rss_gb_after,
            extra=fields(e, rss_gb_freed=e.rss_gb_before - e.rss_gb_after),
        )

    def on_model_retired(self, e: ModelRetired) -> None:
        self.cache_log.info(
            "event=model_retired model=%s reason=%r leases=%d",
            e.model,
            e.reason,
            e.leases,
            extra=fields(e),
        )

    def on_model_still_referenced(self, e: ModelStillReferenced) -> None:
        self.loading_log.warning(
            "event=model_still_referenced model=%s referrers=%s msg=%r",
            e.model,
            ",".join(e.referrers),
            "something outside the cache still holds the model; its memory stays",
            extra=fields(e),
        )

    def on_watchdog_started(self, e: WatchdogStarted) -> None:
        self.watchdog_log.info(
            "event=watchdog_started interval_s=%.2f floor_gb=%.3f budget_gb=%.3f",
            e.interval_s,
            e.floor_gb,
            e.budget_gb,
            extra=fields(e),
        )

    def on_watchdog_short(self, e: WatchdogShort) -> None:
        if e.evicted:
            evicted = ",".join(e.evicted)
        elif e.loaded:
            evicted = f"none (in use: {','.join(e.loaded)})"
        else:
            evicted = "none (no model loaded)"
        self.watchdog_log.log(
            logging.WARNING if e.stuck else logging.INFO,
            "event=watchdog_short reasons=%s used_gb_before=%.3f used_gb_after=%.3f "
            "budget_gb=%.3f available_gb_before=%.3f available_gb_after=%.3f floor_gb=%.3f "
            "evicted=%s",
            ",".join(e.reasons),
            e.used_gb_before,
            e.used_gb_after,
            e.budget_gb,
            e.available_gb_before,
            e.available_gb_after,
            e.floor_gb,
            evicted,
            extra=fields(e),
        )

    def on_watchdog_recovered(self, e: WatchdogRecovered) -> None:
        self.watchdog_log.info(
            "event=watchdog_recovered used_gb=%.3f available_gb=%.3f",
            e.used_gb,
            e.available_gb,
            extra=fields(e),
        )
