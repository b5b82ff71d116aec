"""A full Redis is an error, never a loss.

The broker's Redis runs ``noeviction``: once ``used_memory`` passes ``maxmemory`` it
refuses every write that may grow memory (``OOM command not allowed when used memory >
'maxmemory'``, redis-py's :class:`OutOfMemoryError`), while reads and deletes go on.
Measured before this module: a worker exited on it, threw away messages it had taken,
dropped chunks it had computed, and the producer blamed an unreachable Redis.

What cannot be lost is written anyway, with a script flagged ``allow-oom`` (Redis 7,
Valkey): a few hundred bytes each, the record of a chunk's failure and a message put
back where it was taken from (its bytes had just left the server). Everything else fails
with :data:`REASON`, which names Redis memory and the way out (free memory or raise
``maxmemory``, then ``embedfleet retry``). A server without script flags gets the same
writes without the flag (they fail as any write would).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import OutOfMemoryError, ResponseError

log = logging.getLogger(__name__)

#: Why a chunk or a send failed; ``{what}`` is the step that was refused.
REASON = (
    "RedisMemoryFull: Redis is out of memory (used memory above its maxmemory, "
    "noeviction) and refused a write while {what}; free memory or raise maxmemory "
    "(CONFIG SET maxmemory ...), then run `embedfleet retry {job}`"
)
#: What names the job where the failing step does not know it.
THE_JOB = "<job id>"

_ALLOW_OOM = "#!lua flags=allow-oom\n"

#: KEYS: the job's failed hash (and its record: nothing is written once the job is
#: gone). ARGV: TTL (s), only-if-absent (0/1), error, indices...
_MARK_FAILED = """
if #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local ttl, keep, error = tonumber(ARGV[1]), ARGV[2] == '1', ARGV[3]
for i = 4, #ARGV do
  if keep then redis.call('HSETNX', KEYS[1], ARGV[i], error)
  else redis.call('HSET', KEYS[1], ARGV[i], error) end
end
redis.call('EXPIRE', KEYS[1], ttl)
return #ARGV - 3
"""

#: KEYS: a hash. ARGV: field, value.
_HSET = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

#: KEYS: a hash. ARGV: field, value. Written only over a field that is there.
_HSET_IF_EXISTS = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

#: KEYS: a key. ARGV: value, milliseconds it lasts.
_SET_PX = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

#: KEYS: a queue list. ARGV: one message. Pushed at the end the consumer pops from.
_GIVE_BACK = """
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"""


#: What the server says when it refuses a command for memory (kombu wraps it at times).
OOM_TEXT = "used memory > 'maxmemory'"
#: Seconds a producer keeps trying a send that a full Redis refuses (workers may drain
#: the queues meanwhile) before it records the rest as not sent.
FULL_RETRY_S = 10.0


def is_redis_full(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) is Redis refusing a write for memory."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OutOfMemoryError) or OOM_TEXT in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def reason(what: str, job_id: str = THE_JOB) -> str:
    """The error of a chunk or send that Redis refused for memory."""
    return REASON.format(what=what, job=job_id)


def _eval(client: Any, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    try:
        return client.eval(_ALLOW_OOM + source, len(keys), *keys, *args)
    except ResponseError as exc:
        if is_redis_full(exc) or "shebang" not in str(exc).lower() and "flags" not in str(exc):
            raise
        return client.eval(source, len(keys), *keys, *args)  # a server before Redis 7


def mark_failed(
    client: Any,
    failed_key: str,
    indices: Sequence[int],
    error: str,
    ttl_s: int,
    keep_existing: bool = False,
    job_key: str | None = None,
) -> None:
    """Record ``error`` for chunks ``indices`` in ``failed_key``, even on a full Redis
    (``keep_existing``: not over an error already recorded; ``job_key``: only while that
    job record exists, so a chunk failing after ``delete`` leaves no key behind)."""
    if indices:
        args = [ttl_s, int(keep_existing), error, *map(int, indices)]
        _eval(client, _MARK_FAILED, [failed_key, *([job_key] if job_key else [])], args)


def give_back(client: Any, queue_key: str, message: str) -> None:
    """Put ``message`` (a kombu envelope, JSON) back on ``queue_key``, even on a full
    Redis, where the next consumer pops first."""
    _eval(client, _GIVE_BACK, [queue_key], [message])


def hset(client: Any, key: str, field: str, value: str) -> None:
    """``HSET key field value``, even on a full Redis (a job's few bookkeeping fields)."""
    _eval(client, _HSET, [key], [field, value])


def hset_if_exists(client: Any, key: str, field: str, value: str) -> bool:
    """``HSET key field value`` only while ``field`` is there (one script: nothing gets
    between the check and the write), even on a full Redis; False when it was not
    (a worker's catalog heartbeat must not bring back the entry its shutdown removed)."""
    return bool(_eval(client, _HSET_IF_EXISTS, [key], [field, value]))


def set_px(client: Any, key: str, value: str, px: int) -> None:
    """``SET key value PX px``, even on a full Redis (a worker's heartbeat: a full
    Redis must not make every worker look dead)."""
    _eval(client, _SET_PX, [key], [value, px])


def stop_window(client: Any, job_key: str, job_id: str) -> None:
    """A dataset job whose window could not move on (its next chunk not sent for memory)
    is failed with the reason, instead of waiting for ever; ``retry`` sends the rest."""
    if client.hget(job_key, "kind") == b"dataset":
        hset(client, job_key, "submit_error", reason("sending the next chunks", job_id))
