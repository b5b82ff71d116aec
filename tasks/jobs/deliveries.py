"""Delivery accounting that blames a chunk only for the worker deaths it can have caused.

Every delivery of a chunk is counted (``embedfleet:deliveries:<task id>:<retry>``, an
``INCR``) and records which worker process took it. A worker process is
``host:pid:boot-token``; while it runs chunks it keeps ``embedfleet:alive:<worker>``
fresh (its :class:`Heartbeat`, every :func:`heartbeat_s`, each write lasting
:func:`alive_ttl_s` of the worker's lapse) and holds the chunks it is running in
``embedfleet:running:<worker>``. The lapse and how long delivery keys last come from
the worker's settings (``EMBEDFLEET_WORKER_LAPSE_S``, ``EMBEDFLEET_RESULT_TTL_S``), passed
in by its boot and its chunk tasks: nothing here reads settings.

When a chunk comes back, its previous delivery is judged:

- its worker is still alive (the chunk ran past the visibility timeout, or kombu gave
  it back while the worker was busy): **no blame**;
- its worker is gone but had finished this chunk (it died between the result and the
  acknowledgement): **no blame**;
- its worker is gone while running this chunk among ``k`` chunks: **1/k blame** (a
  worker of concurrency 3 killed holding 3 chunks puts 1/3 on each).

A chunk whose blame reaches ``EMBEDFLEET_MAX_DELIVERIES`` is failed with
:class:`~tasks.contract.errors.TooManyDeliveries`. A chunk that kills every worker it runs on
takes at least ``1/concurrency`` on each death, so it is stopped after at most
``MAX_DELIVERIES x concurrency`` deaths (``MAX_DELIVERIES`` when it runs alone); a
healthy chunk whose workers die for unrelated reasons gathers blame only from deaths
that caught it running, shared with the others the dead worker held.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass

import redis

from tasks.contract.logs import event_logger
from tasks.jobs import redis_full

log = event_logger(__name__)

#: Prefix of the per-delivery counters (``<prefix><task id>:<retry>``).
DELIVERIES_PREFIX = "embedfleet:deliveries:"
#: Prefix of the blame a chunk has gathered (a float, same suffix).
BLAME_PREFIX = "embedfleet:blame:"
#: Prefix of the worker that took a chunk's last delivery (same suffix).
LAST_PREFIX = "embedfleet:delivered-to:"
#: Prefix of a worker's liveness key.
ALIVE_PREFIX = "embedfleet:alive:"
#: Prefix of the set of chunks a worker is running.
RUNNING_PREFIX = "embedfleet:running:"
#: Shortest a liveness write lasts, seconds, whatever the lapse.
MIN_ALIVE_TTL_S = 1.5
#: Liveness writes per lapse: a busy or briefly disconnected worker misses several
#: before it counts as dead.
BEATS_PER_LAPSE = 6


def alive_ttl_s(lapse_s: float) -> float:
    """Seconds a liveness write lasts for a worker lapse of ``lapse_s`` (the worker's
    settings: ``celeryconfig.worker_lapse_s``, at most 3/4 of the visibility timeout, so a
    worker that died is seen dead before kombu's backstop gives its chunks back). A worker
    whose key expired is dead to the fleet: ``tasks.jobs.reclaim`` puts its unacked
    chunks back on their queues."""
    return max(MIN_ALIVE_TTL_S, lapse_s)


def heartbeat_s(lapse_s: float) -> float:
    """Seconds between two liveness writes of a worker whose lapse is ``lapse_s``."""
    return alive_ttl_s(lapse_s) / BEATS_PER_LAPSE


_BEGIN = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local blame = tonumber(redis.call('GET', KEYS[2]) or '0')
local share = 0
local last = redis.call('GET', KEYS[3])
if last and last ~= ARGV[1] then
  local running = ARGV[5] .. last
  if redis.call('EXISTS', ARGV[4] .. last) == 0
      and redis.call('SISMEMBER', running, ARGV[2]) == 1 then
    share = 1 / math.max(redis.call('SCARD', running), 1)
    blame = tonumber(redis.call('INCRBYFLOAT', KEYS[2], share))
    redis.call('EXPIRE', KEYS[2], ARGV[3])
  end
end
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[3])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[3])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[6])
return {n, tostring(blame), tostring(share)}
"""


_END = """
redis.call('SREM', KEYS[1], ARGV[1])
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > 1 and KEYS[5] ~= '' and redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('HSET', KEYS[6], ARGV[2], n)
  redis.call('EXPIRE', KEYS[6], ARGV[3])
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return n
"""
#: Prefix of job records (``tasks.jobs.jobstore.PREFIX``): a chunk's task id is
#: ``<job id>.<index>``.
JOB_PREFIX = "embedfleet:job:"


@dataclass(frozen=True)
class Delivery:
    """One delivery of a chunk: its number, the chunk's blame so far, this one's share."""

    number: int
    blame: float
    share: float


_boot = uuid.uuid4().hex[:8]


def worker_id() -> str:
    """This process as a worker: ``host:pid:boot-token`` (a restart is a new worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_boot}"


def begin(
    client: redis.Redis, task_id: str, attempt: object, *, lapse_s: float, ttl_s: int
) -> Delivery:
    """Count a delivery of ``task_id`` (retry ``attempt``) taken by this process, judge
    the previous one (module docstring), and note this chunk as running here and this
    process alive (for :func:`alive_ttl_s` of ``lapse_s``; the worker's :class:`Heartbeat`
    keeps it so). The delivery keys expire in ``ttl_s``."""
    me, member = worker_id(), f"{task_id}:{attempt}"
    keys = [
        DELIVERIES_PREFIX + member,
        BLAME_PREFIX + member,
        LAST_PREFIX + member,
        RUNNING_PREFIX + me,
        ALIVE_PREFIX + me,
    ]
    args = [
        me,
        member,
        ttl_s,
        ALIVE_PREFIX,
        RUNNING_PREFIX,
        int(alive_ttl_s(lapse_s) * 1000),
    ]
    number, blame, share = client.eval(_BEGIN, len(keys), *keys, *args)
    return Delivery(int(number), float(blame), float(share))


def end(client: redis.Redis, task_id: str, attempt: object, *, ttl_s: int) -> None:
    """The chunk finished here (done, failed or retried): a death now is not its fault,
    and its delivery keys go. A chunk delivered more than once leaves its count in its
    job's ``redelivered`` hash (``<index>`` or ``<index>:<retry>`` -> deliveries), which
    expires (``ttl_s``) and is deleted with the job; nothing is written for a job that
    is gone."""
    member = f"{task_id}:{attempt}"
    job_id, _, index = task_id.rpartition(".")
    field = index if str(attempt) == "0" else f"{index}:{attempt}"
    job = JOB_PREFIX + job_id if job_id else ""
    keys = [
        RUNNING_PREFIX + worker_id(),
        DELIVERIES_PREFIX + member,
        BLAME_PREFIX + member,
        LAST_PREFIX + member,
        job,
        job + ":redelivered",
    ]
    client.eval(_END, len(keys), *keys, member, field, ttl_s)


def is_alive(client: redis.Redis, worker: str) -> bool:
    """True while ``worker``'s liveness key has not lapsed."""
    return bool(client.exists(ALIVE_PREFIX + worker))


class Heartbeat(threading.Thread):
    """Keeps this worker process's liveness key fresh; :meth:`run` only loops over
    :meth:`beat_once`. The worker's boot builds one from its settings' lapse, starts it
    before it consumes (a chunk it takes is never held by a worker that looks dead) and
    stops it at shutdown."""

    def __init__(self, client: redis.Redis, lapse_s: float) -> None:
        super().__init__(name="embedfleet-alive", daemon=True)
        self.client = client
        self.me = worker_id()
        self.ttl_ms = int(alive_ttl_s(lapse_s) * 1000)
        self.interval_s = heartbeat_s(lapse_s)
        self._stopping = threading.Event()

    def beat_once(self) -> None:
        """Write the liveness key now (a failure is logged; the next beat tries again)."""
        try:
            redis_full.set_px(self.client, ALIVE_PREFIX + self.me, "1", self.ttl_ms)
        except redis.ConnectionError as exc:  # Redis restarting: the next beat tries again
            log.debug("event=heartbeat_failed worker=%s error=%r", self.me, str(exc))
        except redis.RedisError as exc:
            log.warning("event=heartbeat_failed worker=%s error=%r", self.me, str(exc))

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.beat_once()

    def stop(self) -> None:
        """Stop beating (the key lapses by itself)."""
        self._stopping.set()


def start_heartbeat(client: redis.Redis, lapse_s: float) -> Heartbeat:
    """Write this process's liveness key now and keep it fresh in a daemon thread;
    returns the :class:`Heartbeat`, which the caller owns (and stops)."""
    heartbeat = Heartbeat(client, lapse_s)
    heartbeat.beat_once()
    heartbeat.start()
    return heartbeat
