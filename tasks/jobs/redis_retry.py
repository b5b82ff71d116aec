"""Retrying a Redis call while the server is unreachable (a restart, a failover).

One helper for producers and workers: kombu's pooled connections go stale across a
Redis restart (the first call after it fails and drops the connection, the next one
reconnects), and a worker must not fail a chunk because Redis blinked.

The loop is redis-py's own :class:`redis.retry.Retry` with an exponential backoff
(0.1 s doubling to 2 s); what this module adds is the window: the call is retried
until ``deadline_s`` (60 s) would pass, then the last error is raised. A Redis that answers
but refuses a write for memory (kombu reports it as a connection error at times) is
retried for ``tasks.jobs.redis_full.FULL_RETRY_S`` (10 s) only.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

from kombu.exceptions import OperationalError
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from tasks.contract.logs import event_logger
from tasks.jobs.redis_full import FULL_RETRY_S, is_redis_full

log = event_logger(__name__)

#: Seconds a call is retried while Redis is unreachable.
REDIS_RETRY_S = 60.0
#: Seconds before the first retry; each next wait doubles, up to MAX_DELAY_S.
FIRST_DELAY_S = 0.1
#: Longest wait between two tries, in seconds.
MAX_DELAY_S = 2.0
#: What "unreachable" looks like, from redis-py, the socket and kombu. Not OSError as a
#: whole: a file that cannot be read or written is not Redis being away, and retrying
#: it for a minute would only hide the error.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,  # the builtin: refused, reset, broken pipe
    TimeoutError,  # the builtin, socket.timeout
    socket.gaierror,  # a host name that does not resolve (DNS blinked)
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
    full_deadline = time.monotonic() + min(deadline_s, FULL_RETRY_S)
    # ExponentialBackoff waits base * 2**failures: 0.1 s after the first failure.
    backoff = ExponentialBackoff(cap=MAX_DELAY_S, base=FIRST_DELAY_S / 2)
    failures = 0

    def give_up_at_the_deadline(exc: Exception) -> None:
        nonlocal failures
        failures += 1
        delay = backoff.compute(failures)  # the wait Retry makes next
        if time.monotonic() + delay > deadline:
            raise exc
        if is_redis_full(exc) and time.monotonic() + delay > full_deadline:
            raise exc  # reachable but full: a shorter wait, then the caller says so
        if what is not None:
            log.warning("event=redis_retry what=%r delay_s=%.1f error=%r", what, delay, str(exc))

    retry = Retry(backoff, retries=-1, supported_errors=errors)  # type: ignore[arg-type]
    return retry.call_with_retry(call, give_up_at_the_deadline)
