"""The Celery app, configured from ``celeryconfig`` (``EMBEDFLEET_*`` settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from celery import Celery

if TYPE_CHECKING:
    from tasks.contract.settings import Settings


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
    """embedfleet's Celery app. ``encoder`` encodes this process's chunks: None until a
    worker's boot sets it (``workers.serving.boot``); the chunk tasks read it from the app
    they are bound to, so nothing reaches for a module global."""

    encoder: Encoder | None = None


def make_app(redis_url: str | None = None, settings: Settings | None = None) -> FleetApp:
    """A Celery app with embedfleet's settings; ``redis_url`` overrides the env var, and
    its TLS / Sentinel options come from ``settings`` (default: read now)."""
    app = FleetApp("embedfleet")
    app.config_from_object("celeryconfig")
    if redis_url:
        from celeryconfig import url_settings
        from tasks.contract.settings import load_settings

        # TLS, transport and Sentinel settings follow the URL given here, not the env's.
        app.conf.update(url_settings(redis_url, settings or load_settings()))
    # Chunk tasks live in tasks.chunks; Celery imports `imports` at worker start, never in
    # producers. The worker's own boot is imported by the worker's entry point
    # (workers.serving.main), or named by celeryconfig for `celery -A tasks worker`.
    # Defaults given lazily: importing `tasks` reads no settings (celeryconfig is read at
    # first use), so the CLI checks them first and a bad one is one line and exit 2.
    app.add_defaults(
        lambda: {
            "imports": ("tasks.chunks.embed", "tasks.chunks.dataset"),
            "task_routes": ("tasks.routing.route_task",),
        }
    )
    return app


app = make_app()
