"""Chunks that were sent and are nowhere: the ones ``retry`` sends again.

A chunk sent is, at every moment, in one of four places: its queue, the ``unacked``
hash (taken by a worker: ``tasks.guards.taking`` records it in the step that takes it),
the job's done chunks, or its failed ones. A chunk in none of them is lost: a Redis
that crashed before it wrote the last second of its log (``appendfsync everysec``), or
a key someone deleted. Nothing will ever run it, and its job would stay ``RUNNING``;
``retry`` (list and dataset jobs) sends such chunks again.

The places are read queue first, then ``unacked``, then the done and failed chunks
(:func:`missing` takes the last from its caller, read after): a message moves from the
queue to ``unacked`` to done, so one that moves while it is being looked for is seen in
the later place. Only a message given back to its queue between the two reads (a
reclaim) can be missed, and then it runs twice, which a chunk may (its result and part
are the same bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kombu.utils.json import loads

from tasks.contract.logs import event_logger
from tasks.jobs import reclaim

log = event_logger(__name__)

#: Queue items read per LRANGE while looking for a job's chunks.
PAGE = 1000


def _index_of(task_id: str, job_id: str) -> int | None:
    head, _, index = task_id.rpartition(".")
    return int(index) if head == job_id and index.isdigit() else None


def queued(redis: Any, queue_keys: Iterable[str], job_id: str) -> set[int]:
    """Indices of ``job_id``'s chunks waiting on ``queue_keys`` (a queue's priority
    lists), read a page at a time."""
    found: set[int] = set()
    needle = job_id.encode()
    for key in queue_keys:
        start = 0
        while True:
            items = redis.lrange(key, start, start + PAGE - 1)
            for item in items:
                if needle not in item:
                    continue
                try:
                    task_id = str((loads(item).get("headers") or {}).get("id", ""))
                except Exception:  # not an envelope: the worker refuses it, no chunk
                    continue
                index = _index_of(task_id, job_id)
                if index is not None:
                    found.add(index)
            if len(items) < PAGE:
                break
            start += PAGE
    return found


def held(redis: Any, job_id: str) -> set[int]:
    """Indices of ``job_id``'s chunks some worker holds (taken, not acknowledged)."""
    return {h.index for h in reclaim.holders(redis, job_id) if h.index is not None}


def queue_keys(connect: Callable[[], Any], queue: str) -> list[str]:
    """The lists ``queue`` is kept in, one per priority (kombu's naming)."""
    with connect() as conn:
        channel = conn.default_channel
        return [channel._q_for_pri(queue, pri) for pri in channel.priority_steps]


def missing(
    redis: Any,
    connect: Callable[[], Any],
    job_id: str,
    queue: str,
    unfinished: Callable[[], set[int]],
) -> list[int]:
    """The chunks of ``job_id`` that ``unfinished()`` (sent, neither done nor failed,
    read when called) names and that are neither on ``queue`` nor held by a worker
    (logged as ``event=chunks_lost``)."""
    waiting = queued(redis, queue_keys(connect, queue), job_id)
    taken = held(redis, job_id)
    found = sorted(unfinished() - waiting - taken)
    if found:
        log.warning("event=chunks_lost job=%s chunks=%s", job_id, found)
    return found
