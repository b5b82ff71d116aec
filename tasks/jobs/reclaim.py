"""Giving back the chunks of a worker whose heartbeat lapsed, in seconds, not hours.

Every worker keeps ``embedfleet:alive:<worker>`` fresh (``tasks.jobs.deliveries``,
lasting ``EMBEDFLEET_WORKER_LAPSE_S``) and every message it takes is recorded with it
(``tasks.guards.holders``). Each worker runs a :class:`Reclaimer`: a worker whose key is
missing at two checks in a row (a beat apart, so a Redis blink is not a death) is dead,
and the live worker that takes the lock ``embedfleet:reclaim-lock`` (one at a time) puts
the dead worker's unacked chunks back on their queues at once. The next worker that
takes such a chunk charges the death to it as before (``deliveries.begin``), so a chunk
that kills every worker still ends ``TooManyDeliveries``. kombu's visibility timeout
stays the backstop for what this misses (a message taken but never recorded).

A worker that only looked dead (SIGSTOP, a long pause) and comes back finds its chunks
taken by others: its late acknowledgement is ignored (``holders._RELEASE``) and its
result, the same bytes, is stored a second time under the same chunk; nothing is lost
or duplicated.

:func:`lapsed` also serves ``status`` (chunks waiting on a dead worker) and
:func:`reclaim_job` serves ``retry`` when no live worker is there to do it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import redis

from tasks.contract.logs import event_logger
from tasks.guards.holders import HOLDERS_KEY, holder_of, restore_held
from tasks.jobs.deliveries import ALIVE_PREFIX, worker_id

log = event_logger(__name__)

#: Key of the lock one reclaiming worker holds.
LOCK_KEY = "embedfleet:reclaim-lock"
#: Milliseconds the lock lasts when its holder dies while reclaiming.
LOCK_TTL_MS = 60_000

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: ``() -> context manager of a kombu Connection``: e.g. ``app.connection_for_write``.
Connect = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Held:
    """One unacked message of a worker: its delivery tag, worker and chunk task id."""

    tag: str
    worker: str
    task_id: str

    @property
    def index(self) -> int | None:
        """The chunk index its task id ends in (None for a message that is no chunk)."""
        index = self.task_id.rpartition(".")[2]
        return int(index) if index.isdigit() else None


def lapsed(client: redis.Redis, job_id: str | None = None) -> list[Held]:
    """Unacked messages whose worker's heartbeat has lapsed (of ``job_id`` only, if given)."""
    return [h for h, alive in _held(client, job_id) if not alive]


def held_live(client: redis.Redis, job_id: str) -> list[Held]:
    """``job_id``'s messages a live worker holds unacked: chunks it runs (or has taken
    and is about to run, or skip as revoked)."""
    return [h for h, alive in _held(client, job_id) if alive]


def holders(client: redis.Redis, job_id: str | None = None) -> list[Held]:
    """Every unacked message (of ``job_id`` only, if given) with the worker holding it."""
    raw: dict[bytes, bytes] = client.hgetall(HOLDERS_KEY)  # type: ignore[assignment]
    held = [Held(tag.decode(), *holder_of(value)) for tag, value in raw.items()]
    if job_id is not None:
        held = [h for h in held if h.task_id.startswith(job_id + ".")]
    return held


def _held(client: redis.Redis, job_id: str | None) -> list[tuple[Held, bool]]:
    """Every unacked message (of ``job_id`` only, if given), with whether its worker's
    heartbeat is current."""
    held = holders(client, job_id)
    workers = sorted({h.worker for h in held})
    if not workers:
        return []
    pipe = client.pipeline(transaction=False)
    for worker in workers:
        pipe.exists(ALIVE_PREFIX + worker)
    alive = {w for w, up in zip(workers, pipe.execute(), strict=True) if up}
    return [(h, h.worker in alive) for h in held]


def lapsed_chunks(client: redis.Redis, job_id: str) -> list[int]:
    """Indices of ``job_id``'s chunks that wait on a dead worker (``status``)."""
    return sorted(h.index for h in lapsed(client, job_id) if h.index is not None)


def give_back(connect: Connect, held: list[Held]) -> int:
    """Put each message of ``held`` back on its queue while its dead worker still holds
    it; returns how many went back."""
    if not held:
        return 0
    restored = 0
    with connect() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as client:
            for h in held:
                restored += restore_held(channel, client, h.tag, h.worker)
    return restored


def reclaim_job(client: redis.Redis, connect: Connect, job_id: str) -> int:
    """Put the chunks of ``job_id`` that dead workers hold back on their queues now
    (``retry``); returns how many."""
    return give_back(connect, lapsed(client, job_id))


class Reclaimer(threading.Thread):
    """Watches for lapsed workers; :meth:`run` only loops over :meth:`check_once`, every
    ``interval_s`` (the worker's boot passes its heartbeat interval,
    ``tasks.jobs.deliveries.heartbeat_s`` of its lapse)."""

    def __init__(self, client: redis.Redis, connect: Connect, interval_s: float) -> None:
        super().__init__(name="embedfleet-reclaim", daemon=True)
        self.client = client
        self.connect = connect
        self.interval_s = interval_s
        self.me = worker_id()
        self._suspects: set[str] = set()
        self._stopping = threading.Event()

    def check_once(self) -> int:
        """One look: give back the chunks of workers that were lapsed at the previous
        look too (one worker at a time fleet-wide, by the lock); returns how many."""
        held = lapsed(self.client)
        suspects = {h.worker for h in held}
        dead = suspects & self._suspects
        self._suspects = suspects
        held = [h for h in held if h.worker in dead]
        if not held:
            return 0
        if not self.client.set(LOCK_KEY, self.me, nx=True, px=LOCK_TTL_MS):
            return 0  # another worker is at it
        try:
            restored = give_back(self.connect, held)
        finally:
            self.client.eval(_UNLOCK, 1, LOCK_KEY, self.me)
        for worker in sorted(dead):
            chunks = sorted(h.task_id for h in held if h.worker == worker)
            log.warning(
                "event=worker_lapsed worker=%s chunks_requeued=%d tasks=%s by=%s",
                worker,
                len(chunks),
                ",".join(chunks),
                self.me,
            )
        return restored

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.check_once()
            except Exception as exc:  # Redis away or full: the next look tries again
                log.warning("event=reclaim_failed error=%r", str(exc))

    def stop(self) -> None:
        self._stopping.set()
