"""Which worker holds each unacknowledged message: kombu's ack emulation, with an owner.

kombu's Redis transport keeps every message a worker took in the ``unacked`` hash
(delivery tag -> envelope, exchange, routing key) and its ``unacked_index`` zset (tag ->
time taken) until it is acknowledged; only the visibility timeout (3,600 s by default)
gives back the messages of a worker that died. It does not record *which* worker took a
message. :class:`HolderQoS` does, in the same transaction: ``embedfleet:held-by`` maps
each tag to ``"<worker> <task id>"`` (the worker as ``tasks.jobs.deliveries.worker_id``).
So a live worker can give back exactly the messages of a worker whose heartbeat lapsed
(:func:`restore_held`, used by ``tasks.jobs.reclaim``), at once.

A worker that only looked dead (paused, cut off from Redis) and comes back must not undo
the copy another worker took meanwhile: its acknowledgement, rejection or restore of a
tag another worker now holds is a no-op (:data:`_RELEASE`).
"""

from __future__ import annotations

from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from tasks.contract.logs import event_logger
from tasks.jobs.deliveries import worker_id

log = event_logger(__name__)

#: Hash: delivery tag -> ``"<worker> <task id>"`` of every message a worker holds unacked.
HOLDERS_KEY = "embedfleet:held-by"

#: KEYS: unacked index, unacked hash, holders. ARGV: tag, this worker.
#: Drops the tag from all three unless another worker holds it now (returns 0 then).
_RELEASE = """
local holder = redis.call('HGET', KEYS[3], ARGV[1])
if holder and string.sub(holder, 1, #ARGV[2] + 1) ~= ARGV[2] .. ' ' then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


def holder_of(value: bytes | str | None) -> tuple[str, str]:
    """(worker, task id) of a ``HOLDERS_KEY`` value."""
    text = bytes_to_str(value or "")
    worker, _, task_id = text.partition(" ")
    return worker, task_id


def restore_held(
    channel: Any, client: Any, tag: str, worker: str | None, leftmost: bool = False
) -> bool:
    """Put message ``tag`` back on its queue (kombu's ``restore_by_tag``), only while
    ``worker`` holds it (``None``: while no other worker than this one does), first in
    line (``leftmost``: last, as kombu requeues a rejected message). The tag leaves the
    unacked hash, its index and the holders in one transaction. True when a message was
    put back."""
    restored = False
    me = worker_id()

    def restore_transaction(pipe: Any) -> None:
        nonlocal restored
        restored = False
        holder, _ = holder_of(pipe.hget(HOLDERS_KEY, tag))
        raw = pipe.hget(channel.unacked_key, tag)
        pipe.multi()
        if worker is not None and holder != worker:
            return  # taken again by someone else, or already given back
        if worker is None and holder not in ("", me):
            return
        pipe.zrem(channel.unacked_index_key, tag)
        pipe.hdel(channel.unacked_key, tag)
        pipe.hdel(HOLDERS_KEY, tag)
        if raw:
            message, exchange, routing_key = loads(bytes_to_str(raw))
            channel._do_restore_message(message, exchange, routing_key, pipe, leftmost)
            restored = True

    client.transaction(restore_transaction, channel.unacked_key, HOLDERS_KEY)
    return restored


class HolderQoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's Redis QoS that records which worker holds each unacked message."""

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        task_id = str((message.headers or {}).get("id", ""))
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()}).hset(
                self.unacked_key,
                delivery_tag,
                dumps([message._raw, delivery["exchange"], delivery["routing_key"]]),
            ).hset(HOLDERS_KEY, delivery_tag, f"{worker_id()} {task_id}").execute()
            virtual.QoS.append(self, message, delivery_tag)

    def _release(self, delivery_tag: str) -> None:
        with self.channel.conn_or_acquire() as client:
            released = client.eval(
                _RELEASE,
                3,
                self.unacked_index_key,
                self.unacked_key,
                HOLDERS_KEY,
                delivery_tag,
                worker_id(),
            )
        if not released:
            log.info("event=late_ack_ignored tag=%s reason=%r", delivery_tag, "held elsewhere")

    def ack(self, delivery_tag: str) -> None:
        self._release(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            with self.channel.conn_or_acquire() as client:
                restore_held(self.channel, client, delivery_tag, None, leftmost=True)
        else:
            self._release(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        # At shutdown: give back what this worker holds, not what others took since.
        with self.channel.conn_or_acquire(client) as client:
            for tag in self._delivered:
                restore_held(self.channel, client, tag, None)
        self._delivered.clear()

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        # kombu's restore_by_tag (the visibility-timeout backstop) ends here.
        return super()._remove_from_indices(delivery_tag, pipe).hdel(HOLDERS_KEY, delivery_tag)
