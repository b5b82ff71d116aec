"""The Celery app, configured from ``celeryconfig`` (``EMBEDFLEET_*`` env vars)."""

from __future__ import annotations

from celery import Celery


def make_app(redis_url: str | None = None) -> Celery:
    """A Celery app with embedfleet's settings; ``redis_url`` overrides the env var."""
    app = Celery("embedfleet")
    app.config_from_object("celeryconfig")
    if redis_url:
        from celeryconfig import url_settings

        # TLS, transport and Sentinel settings follow the URL given here, not the env's.
        app.conf.update(url_settings(redis_url))
    # Chunk tasks live in tasks.embed; workers.serving.boot (threads, cache, control commands)
    # is imported by workers only: Celery imports `imports` at worker start, never in
    # producers, so producers never load torch.
    app.conf.imports = ("tasks.embed", "tasks.dataset_chunk", "workers.serving.boot")
    app.conf.task_routes = ("tasks.routing.route_task",)
    return app


app = make_app()
