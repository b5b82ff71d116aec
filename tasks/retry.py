"""Retrying a Redis call while the server is unreachable (a restart, a failover).

One helper for producers and workers: kombu's pooled connections go stale across a
Redis restart (the first call after it fails and drops the connection, the next one
reconnects), and a worker must not fail a chunk because Redis blinked.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

#: Seconds a call is retried while Redis is unreachable.
REDIS_RETRY_S = 60.0
#: What "unreachable" looks like, from redis-py, the OS's sockets and kombu. Not every
#: OSError: a file that cannot be written (PermissionError, ENOSPC, ...) is no reason
#: to wait for Redis, and is raised at once.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,
    socket.gaierror,
    OperationalError,
)

T = TypeVar("T")


def retry_while_unreachable(
    call: Callable[[], T],
    deadline_s: float = REDIS_RETRY_S,
    what: str | None = None,
    errors: tuple[type[BaseException], ...] = CONNECTION_ERRORS,
) -> T:
    """Run ``call``; on ``errors``, retry with backoff (0.1 s doubling to 2 s) until
    ``deadline_s`` has passed, then raise the last error. ``what`` names the call in a
    warning per retry."""
    deadline = time.monotonic() + deadline_s
    delay = 0.1
    while True:
        try:
            return call()
        except errors as exc:
            if time.monotonic() + delay > deadline:
                raise
            if what is not None:
                log.warning(
                    "event=redis_retry what=%r delay_s=%.1f error=%r", what, delay, str(exc)
                )
            time.sleep(delay)
            delay = min(2.0, delay * 2)
