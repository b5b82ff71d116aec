"""The Celery app, configured from ``celeryconfig`` (``EMBEDFLEET_*`` settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery

if TYPE_CHECKING:
    from tasks.contract.settings import Settings


def make_app(redis_url: str | None = None, settings: Settings | None = None) -> Celery:
    """A Celery app with embedfleet's settings; ``redis_url`` overrides the env var, and
    its TLS / Sentinel options come from ``settings`` (default: read now)."""
    app = Celery("embedfleet")
    app.config_from_object("celeryconfig")
    if redis_url:
        from celeryconfig import url_settings
        from tasks.contract.settings import load_settings

        # TLS, transport and Sentinel settings follow the URL given here, not the env's.
        app.conf.update(url_settings(redis_url, settings or load_settings()))
    # Chunk tasks live in tasks.chunks.embed; workers.serving.boot (threads, cache, control commands)
    # is imported by workers only: Celery imports `imports` at worker start, never in
    # producers, so producers never load torch.
    # Defaults given lazily: importing `tasks` reads no settings (celeryconfig is read at
    # first use), so the CLI checks them first and a bad one is one line and exit 2.
    app.add_defaults(
        lambda: {
            "imports": ("tasks.chunks.embed", "tasks.chunks.dataset", "workers.serving.boot"),
            "task_routes": ("tasks.routing.route_task",),
        }
    )
    return app


app = make_app()
