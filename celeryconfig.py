"""Every Celery setting of embedfleet, built from one typed settings object:
:func:`celery_settings` (``tasks.app.make_app`` configures its app with it).

Importing this module reads nothing, and nothing here answers a setting by itself: code
takes each value from the settings object it was handed (its app's, ``FleetApp.settings``;
a client's; the one the entry point read).
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlparse

from tasks.contract.settings import Settings, process_settings


def worker_lapse_s(settings: Settings) -> float:
    """Seconds without a heartbeat after which a worker is taken for dead and its unacked
    chunks go back on their queues (tasks/jobs/reclaim.py): at most 3/4 of the visibility
    timeout, so a dead worker is seen dead before kombu's own backstop restores its chunks."""
    return min(settings.worker_lapse_s, 0.75 * settings.visibility_timeout_s)


def _transport_options(settings: Settings) -> dict[str, Any]:
    # kombu scans for unacked messages of dead consumers every
    # unacked_restore_interval * unacked_restore_throttle seconds (10 x 10 by default),
    # so a 10 s visibility timeout would still wait ~100 s. Tie the scan to the timeout.
    visibility = settings.visibility_timeout_s
    return {
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1, min(10, visibility // 2)),
        "unacked_restore_throttle": 1,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }


#: URL schemes the fleet speaks (Redis, Redis over TLS, Redis Sentinel, a Unix socket).
REDIS_SCHEMES = ("redis", "rediss", "sentinel", "redis+socket")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the broker and result backend, or None when it can."""
    scheme = urlparse(url.split(";")[0]).scheme
    if scheme not in REDIS_SCHEMES:
        shown = scheme + "://" if scheme else repr(url.split("@")[-1][:60])
        return (
            f"EMBEDFLEET_REDIS_URL must be a Redis URL ({', '.join(s + '://' for s in REDIS_SCHEMES)}"
            f"), got {shown}...; e.g. redis://127.0.0.1:6379/0"
        )
    return None


def tls_options(url: str, settings: Settings | None = None) -> dict[str, Any] | None:
    """SSL options for a ``rediss://`` URL from ``EMBEDFLEET_REDIS_TLS_*``; None otherwise.

    The server certificate is verified unless ``EMBEDFLEET_REDIS_TLS_CERT_REQS=none``
    says otherwise (kombu alone would fall back to no verification).
    """
    if urlparse(url).scheme != "rediss":
        return None
    settings = settings or process_settings()
    levels = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    options: dict[str, Any] = {"ssl_cert_reqs": levels[settings.redis_tls_cert_reqs]}
    for value, key in (
        (settings.redis_tls_ca_certs, "ssl_ca_certs"),
        (settings.redis_tls_certfile, "ssl_certfile"),
        (settings.redis_tls_keyfile, "ssl_keyfile"),
    ):
        if value:
            options[key] = value
    return options


def url_settings(url: str, settings: Settings | None = None) -> dict[str, Any]:
    """The settings that follow from the broker URL: TLS, transport, Sentinel master.

    - ``rediss://``: TLS for broker and result backend alike (:func:`tls_options`).
    - ``redis://`` / ``rediss://``: kombu's Redis transport with undecodable queue items
      refused instead of crashing the worker (tasks/guards/transport.py).
    - ``sentinel://h1:26379;sentinel://h2:26379/0``: Redis Sentinel for HA; the master's
      name comes from ``EMBEDFLEET_REDIS_SENTINEL_MASTER`` (default ``mymaster``).
    """
    settings = settings or process_settings()
    scheme = urlparse(url.split(";")[0]).scheme
    options = _transport_options(settings)
    conf: dict[str, Any] = {
        "broker_url": url,
        "result_backend": url,
        "broker_use_ssl": tls_options(url, settings),
        "redis_backend_use_ssl": tls_options(url, settings),
    }
    if scheme in ("redis", "rediss"):
        conf["broker_transport"] = "tasks.guards.transport:Transport"
    elif scheme == "sentinel":
        conf["broker_transport"] = "tasks.guards.transport:SentinelTransport"
        options["master_name"] = settings.redis_sentinel_master
    conf["result_backend_transport_options"] = dict(options)
    # Read by the broker's channel (tasks.guards.transport), which records a chunk failed
    # when a full Redis refuses the message it took: the records it writes last as long.
    conf["broker_transport_options"] = {**options, "result_ttl_s": settings.result_ttl_s}
    return conf


#: Wire formats a worker accepts: msgpack (embeddings travel as raw float32 bytes) or
#: JSON; never pickle (tasks/guards/transport.py refuses the rest before decoding).
accept_content = ["msgpack", "json"]

#: The Celery settings that follow from no setting of ours.
_FIXED: dict[str, Any] = {
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": None,  # keep trying while Redis restarts
    # Storing a chunk result retries while Redis restarts. Without this (Celery's default),
    # a chunk that finished during a restart lost its result and its message stayed in the
    # unacked hash until the visibility timeout (measured: a job stalled at 79 of 80).
    "result_backend_always_retry": True,
    "result_backend_max_sleep_between_retries_ms": 2000,
    # Wire format: msgpack (embeddings travel as raw float32 bytes) or JSON; never pickle.
    # accept_content also governs remote-control (pidbox) messages; events are JSON only.
    "task_serializer": "msgpack",
    "result_serializer": "msgpack",
    "accept_content": accept_content,
    "result_accept_content": ["msgpack", "json"],
    "event_serializer": "json",
    # The threads pool (reload reaches the model cache), with a net under Celery's trace
    # setup: a message it raises on is refused, never left holding a slot (tasks/guards/pool.py).
    "worker_pool": "tasks.guards.pool:ThreadPool",
    # `pool_restart` would import modules named on the wire: keep it off.
    "worker_pool_restarts": False,
    # Delivery: a chunk is acknowledged only once it is done; a worker that dies mid-chunk
    # gives it back. Chunk tasks are idempotent, so running one twice is harmless.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    # Not result_extended: it would store every chunk's texts again inside its result (a
    # second copy of the input in Redis for EMBEDFLEET_RESULT_TTL_S), and a chunk whose texts cannot
    # be encoded (a lone surrogate sent as JSON) could not even record its refusal.
    "result_extended": False,
    "task_track_started": True,
    # Flower and `embedfleet jobs` want to see tasks.
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    # What a worker imports at start: the chunk tasks, and the worker's own boot (its runtime,
    # handed to the app as its encoder). `embedfleet worker` imports the boot itself; this
    # line is what lets a plain `celery -A tasks worker` boot the same way. Producers never
    # import `imports`.
    "imports": ("tasks.chunks.embed", "tasks.chunks.dataset", "workers.serving.boot"),
    # Queues are per model (embed.<model>) and created by routing, never a default queue.
    "task_create_missing_queues": True,
    "task_default_queue": "embedfleet.default",
    "worker_hijack_root_logger": False,
    "worker_redirect_stdouts": False,
    "worker_cancel_long_running_tasks_on_connection_loss": False,
}


def celery_settings(settings: Settings) -> dict[str, Any]:
    """Every Celery setting for ``settings``: the fixed ones, those of its broker URL
    (:func:`url_settings`), and how long results stay."""
    return {
        **_FIXED,
        **url_settings(settings.redis_url, settings),
        "result_expires": settings.result_ttl_s,
    }
