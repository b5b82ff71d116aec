"""Asking the running fleet: which workers answer, what each has loaded, reload them.

Broadcasts over the Celery control channel; each call retries while Redis is
unreachable. ``EmbeddingClient.models`` / ``reload`` / ``workers`` are these.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from tasks.jobs.redis_retry import retry_while_unreachable


def workers(app: Celery, timeout: float = 1.0, expected: int | None = None) -> list[str]:
    """Names of the workers that answer a ping: all that answer within ``timeout``
    seconds, or the first ``expected`` (returning as soon as that many have)."""
    replies = (
        retry_while_unreachable(lambda: app.control.ping(timeout=timeout, limit=expected)) or []
    )
    return sorted(name for reply in replies for name in reply)


def models(
    app: Celery, timeout: float = 3.0, destination: list[str] | None = None
) -> list[dict[str, Any]]:
    """Per worker: config hash, budget, RSS and its models (loaded, RAM, hits).
    ``destination`` asks only the named workers, and returns as soon as each answered
    (the client passes the catalog's live workers by default); a named worker that does
    not answer (stopped, killed a moment ago) costs the ``timeout`` and has no row.
    Without it, the whole fleet is listened to for ``timeout`` seconds (it cannot know
    how many will answer)."""
    replies = retry_while_unreachable(
        lambda: app.control.broadcast(
            "embedfleet_models",
            reply=True,
            timeout=timeout,
            destination=destination,
            limit=len(destination) if destination else None,
        )
    )
    rows = [{"worker": worker, **body} for reply in replies or [] for worker, body in reply.items()]
    return sorted(rows, key=lambda r: r["worker"])


def reload(
    app: Celery,
    timeout: float = 10.0,
    destination: list[str] | None = None,
    allow_empty: bool = False,
    live: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Broadcast ``reload_models``: every worker re-reads its config and applies it.

    A config without any model is refused (``ok: false``) unless ``allow_empty``.
    Returns one row per worker: ``{"worker","ok","config_hash","added","removed",
    "changed","error"}``. ``destination`` limits it to the named workers. Redis
    broadcasts are fire-and-forget: a worker that is down misses it, and loads the
    current config when it starts. How many replies to wait for is the count of workers
    that answer a ping (which returns once the ``live`` ones, the catalog's, could
    have: at most 1 s).
    """
    expected = (
        len(destination) if destination else len(workers(app, expected=len(live or []) or None))
    )
    replies = retry_while_unreachable(
        lambda: app.control.broadcast(
            "reload_models",
            arguments={"allow_empty": True} if allow_empty else None,
            reply=True,
            timeout=timeout,
            limit=expected or None,
            destination=destination,
        )
    )
    empty = {"ok": False, "config_hash": None, "added": [], "removed": [], "changed": []}
    rows = [
        {"worker": worker, **empty, "error": None, **body}
        for reply in replies or []
        for worker, body in reply.items()
    ]
    return sorted(rows, key=lambda r: r["worker"])
