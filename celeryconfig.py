"""Every Celery setting of embedfleet, read from ``EMBEDFLEET_*`` environment variables.

Loaded by ``tasks.app`` with ``config_from_object``; import-time only reads the
environment, so the same module serves producers and workers.
"""

from __future__ import annotations

import os

#: Broker and result backend (any Redis-compatible server; ``rediss://`` for TLS).
REDIS_URL = os.environ.get("EMBEDFLEET_REDIS_URL", "redis://127.0.0.1:6379/0")

#: Seconds before an unacked chunk of a dead worker is delivered again.
VISIBILITY_TIMEOUT_S = int(os.environ.get("EMBEDFLEET_VISIBILITY_TIMEOUT_S", "3600"))

#: Seconds that chunk results and job records stay in Redis.
RESULT_TTL_S = int(os.environ.get("EMBEDFLEET_RESULT_TTL_S", str(7 * 24 * 3600)))

# kombu scans for unacked messages of dead consumers every
# unacked_restore_interval * unacked_restore_throttle seconds (10 x 10 by default),
# so a 10 s visibility timeout would still wait ~100 s. Tie the scan to the timeout.
_RESTORE_INTERVAL_S = max(1, min(10, VISIBILITY_TIMEOUT_S // 2))
_TRANSPORT_OPTIONS = {
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    "unacked_restore_interval": _RESTORE_INTERVAL_S,
    "unacked_restore_throttle": 1,
    "socket_keepalive": True,
    "health_check_interval": 10,
}

broker_url = REDIS_URL
result_backend = REDIS_URL
broker_transport_options = dict(_TRANSPORT_OPTIONS)
result_backend_transport_options = dict(_TRANSPORT_OPTIONS)
broker_connection_retry_on_startup = True
broker_connection_max_retries = None  # keep trying while Redis restarts

# Wire format: msgpack (embeddings travel as raw float32 bytes) or JSON; never pickle.
task_serializer = "msgpack"
result_serializer = "msgpack"
accept_content = ["msgpack", "json"]
result_accept_content = ["msgpack", "json"]
event_serializer = "json"

# Delivery: a chunk is acknowledged only once it is done; a worker that dies mid-chunk
# gives it back. Chunk tasks are idempotent, so running one twice is harmless.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
result_expires = RESULT_TTL_S
result_extended = True
task_track_started = True

# Flower and `embedfleet jobs` want to see tasks.
worker_send_task_events = True
task_send_sent_event = True

# Queues are per model (embed.<model>) and created by routing, never a default queue.
task_create_missing_queues = True
task_default_queue = "embedfleet.default"
worker_hijack_root_logger = False
worker_redirect_stdouts = False
worker_cancel_long_running_tasks_on_connection_loss = False
