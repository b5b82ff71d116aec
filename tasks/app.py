"""The Celery app, configured from ``celeryconfig`` (``EMBEDFLEET_*`` settings)."""

from __future__ import annotations

from typing import Any, Protocol

from celery import Celery

import celeryconfig  # a module import: celeryconfig may be the one importing `tasks`
from tasks.contract.settings import Settings, process_settings


class Encoder(Protocol):
    """What encodes a chunk: ``(model, texts, options) -> (vectors, version used[,
    columns])``; ``columns`` (per output row: ``tokens``, ``truncated``) travel beside
    the vectors (``tasks.contract.wire``).

    The contract imports no worker code: a worker's boot hands its runtime's encoder to
    the app it runs (``FleetApp.encoder``), so producers never load torch.
    """

    def __call__(
        self, model: str, texts: list[str], options: dict[str, Any]
    ) -> tuple[Any, ...]: ...


class FleetApp(Celery):  # type: ignore[misc]
    """embedfleet's Celery app, holding the settings it was built from (:attr:`settings`)
    and the encoder of this process's chunks (:attr:`encoder`: None until a worker's boot
    sets it, ``workers.serving.boot``). The chunk tasks read both from the app they are
    bound to, so nothing reaches for a module global."""

    encoder: Encoder | None = None
    #: What the worker's boot built and owns (``workers.serving.worker.Worker``: runtime,
    #: publisher, heartbeat, ...), for its remote-control commands; None elsewhere.
    #: The contract never reads it.
    worker: Any = None

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings

    @property
    def settings(self) -> Settings:
        """The settings this app was built with, else this process's (read once)."""
        return self._settings if self._settings is not None else process_settings()


def make_app(redis_url: str | None = None, settings: Settings | None = None) -> FleetApp:
    """A Celery app configured from ``settings`` (default: this process's, read at first
    use, ``tasks.contract.settings.process_settings``); ``redis_url`` overrides their
    broker URL, its TLS / Sentinel options still taken from ``settings``."""
    app = FleetApp("embedfleet", settings=settings)

    def configuration() -> dict[str, Any]:
        # Given lazily: building the app reads no settings, so the CLI checks them first
        # and a bad one is one line and exit 2.
        values = celeryconfig.celery_settings(app.settings)
        if redis_url:
            values.update(celeryconfig.url_settings(redis_url, app.settings))
        # Chunk tasks live in tasks.chunks (celeryconfig's `imports`); routes by model.
        values["task_routes"] = ("tasks.routing.route_task",)
        return values

    app.add_defaults(configuration)
    return app


app = make_app()
