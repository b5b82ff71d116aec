"""Taking a message off a queue and recording who holds it, in one step.

kombu's Redis transport takes a message with ``BRPOP`` and records it as taken (the
``unacked`` hash and its index; here also ``embedfleet:held-by``) only later, from the
worker, after the reply is read. In between the message is in no list and no hash:
a worker SIGKILLed then takes it with it, and no timeout or reclaim can give it back.
That gap is not a few microseconds. A worker whose prefetch is full leaves the reply of
its outstanding BRPOP unread in its socket until a chunk finishes (kombu pauses the
read), seconds on a busy worker. Measured: a churn soak (a worker SIGKILLed every 3 s)
on a loaded machine ended at 124 of 125 chunks, the missing one taken by a killed
worker and recorded nowhere.

Here a consumer takes with :data:`TAKE`, a script that moves the oldest message of the
first non-empty queue into the unacked hash, its index and the holders, and only then
off the list: whatever happens to the worker afterwards, the message is recorded with
it, and the reclaim (``tasks.jobs.reclaim``) or the visibility timeout gives it back.

A script cannot block, so an idle consumer waits with ``BRPOP`` on its queues'
*bells* (:func:`bell_key`), lists of tokens that publishers of this transport push
beside each message (:func:`ring`). A token is only a wake-up: losing one loses
nothing, and the wait ends after the transport's ``brpop_timeout`` (1 s) anyway, so a
message put on a queue by anything that rings no bell (kombu's own restore, a foreign
publisher) waits at most that long. A consumer whose take found a message takes again
at once (no bell) until a take finds none.

The order of the script's writes matters on a full Redis: the first is an ``HSET`` that
Redis refuses when memory is out, before anything was moved, so a refused take leaves
the message on its queue (``tasks.guards.transport`` then handles it as before).
"""

from __future__ import annotations

import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual.base import Empty
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from tasks.contract.logs import event_logger
from tasks.guards.holders import HOLDERS_KEY
from tasks.jobs import redis_full
from tasks.jobs.deliveries import worker_id

log = event_logger(__name__)

#: Key prefix of the bells (``embedfleet:bell:<queue>``).
BELL_PREFIX = "embedfleet:bell:"
#: Tokens a bell keeps at most: a burst wakes this many waiting consumers at once;
#: consumers that take greedily never read tokens, and stale ones only cost a take.
BELL_TOKENS = 64
#: Seconds a bell lasts after its last ring (a removed model's bell goes).
BELL_TTL_S = 3600

#: KEYS: unacked index, unacked hash, holders, then the queue keys in order.
#: ARGV: now (the index's score), this worker, then per queue key "1" to record the
#: message as taken (consumed with acknowledgements) or "0" (no_ack).
#: Returns {queue key, message, recorded (1/0)} or nil when every queue is empty.
TAKE = """
for i = 4, #KEYS do
  local item = redis.call('LINDEX', KEYS[i], -1)
  if item then
    local recorded = 0
    if ARGV[i - 1] == '1' then
      local ok, msg = pcall(cjson.decode, item)
      local tag, ex, rk, id
      if ok and type(msg) == 'table' and type(msg.properties) == 'table' then
        local p = msg.properties
        tag = p.delivery_tag
        if type(p.delivery_info) == 'table' then
          ex = p.delivery_info.exchange
          rk = p.delivery_info.routing_key
        end
        if type(msg.headers) == 'table' then id = msg.headers.id end
      end
      if type(id) ~= 'string' then id = '' end
      if type(tag) == 'string' and type(ex) == 'string' and type(rk) == 'string' then
        redis.call('HSET', KEYS[2], tag,
          '[' .. item .. ',' .. cjson.encode(ex) .. ',' .. cjson.encode(rk) .. ']')
        redis.call('ZADD', KEYS[1], ARGV[1], tag)
        redis.call('HSET', KEYS[3], tag, ARGV[2] .. ' ' .. id)
        recorded = 1
      end
    end
    redis.call('RPOP', KEYS[i])
    return {KEYS[i], item, recorded}
  end
end
return false
"""


def bell_key(queue: str) -> str:
    """The bell of ``queue`` (one for all its priority lists)."""
    return BELL_PREFIX + queue


def ring(pipe: Any, queue: str) -> None:
    """Add a token to ``queue``'s bell on ``pipe`` (a pipeline or a publish batch with
    ``add``): capped at :data:`BELL_TOKENS`, lasting :data:`BELL_TTL_S`."""
    key = bell_key(queue)
    for name, *args in (("lpush", 1), ("ltrim", 0, BELL_TOKENS - 1), ("expire", BELL_TTL_S)):
        if hasattr(pipe, "add"):  # kombu's publish batch
            pipe.add(name, key, *args)
        else:
            getattr(pipe, name)(key, *args)


class TakingChannel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel taking with :data:`TAKE`, waiting on bells, ringing them
    when it publishes or gives a message back. The delivery callback must skip the
    Redis writes of ``qos.append`` for a message whose take recorded it
    (:attr:`_recorded_by_take`; ``tasks.guards.transport`` does)."""

    #: What the poll connection was last sent: "take" (:data:`TAKE`), "bell"
    #: (BRPOP on the bells) or "brpop" (kombu's own, with a ``global_keyprefix``).
    _sent = "take"
    #: Whether the next poll takes at once (the last take found a message, or a bell
    #: rang or timed out) rather than waiting on the bells.
    _take_next = True
    #: Whether the message being delivered now was recorded as taken by the take itself.
    _recorded_by_take = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._no_ack_queues: set[str] = set()
        super().__init__(*args, **kwargs)

    @property
    def _takes_atomically(self) -> bool:
        # keys given to a script are not prefixed by kombu's prefixing client
        return not self.global_keyprefix

    def _brpop_start(self, timeout: Any = None) -> Any:
        """Send the poll's command (see the module docstring): a take, or a wait on the
        bells; kombu's BRPOP where the take cannot serve."""
        if not self._takes_atomically:
            self._sent = "brpop"
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = time.monotonic()
        if self._take_next:
            pairs = self._take_order(queues)
            keys = [key for key, _ in pairs]
            record = ["0" if q in self._no_ack_queues else "1" for _, q in pairs]
            self._sent = "take"
            connection.send_command(
                "EVAL",
                TAKE,
                3 + len(keys),
                self.unacked_index_key,
                self.unacked_key,
                HOLDERS_KEY,
                *keys,
                time.time(),
                worker_id(),
                *record,
            )
        else:
            self._sent = "bell"
            bells = [bell_key(q) for q in queues]
            wait = self.brpop_timeout if timeout is None else timeout
            connection.send_command("BRPOP", *bells, wait or 0)
        return None

    def _take_order(self, queues: list[str]) -> list[tuple[str, str]]:
        """(list key, queue) in the order a take looks: every queue at the first
        priority, then at the next (kombu's BRPOP order)."""
        return [(self._q_for_pri(q, pri), q) for pri in self.priority_steps for q in queues]

    def _brpop_read(self, **options: Any) -> Any:
        if self._sent == "brpop":
            return super()._brpop_read(**options)
        return self._take_read(**options)

    def _take_read(self, **options: Any) -> bool:
        """Read the reply of :meth:`_brpop_start`: a bell (wake: take next) or a take
        (deliver what it took; take again at once if it found something)."""
        connection = self.client.connection
        try:
            try:
                reply = self.client.parse_response(
                    connection, "BRPOP" if self._sent == "bell" else "EVAL", **options
                )
            except self.connection_errors:
                connection.disconnect()  # the next poll reconnects
                raise
            except Exception as exc:
                if self._sent == "take" and redis_full.is_redis_full(exc):
                    return self._take_on_full_redis()
                raise
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        if self._sent == "bell":
            self._take_next = True  # rang, or the wait timed out: look once
            raise Empty()
        if not reply:
            self._take_next = False
            raise Empty()
        self._take_next = True
        key, item, recorded = reply
        dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(dest)
        raw_message = loads(bytes_to_str(item))
        self._recorded_by_take = bool(recorded)
        try:
            self.connection._deliver(raw_message, dest)
        finally:
            self._recorded_by_take = False
        return True

    def _forget_taken(self, raw_message: Any) -> None:
        """Drop the record the take made of a message refused before kombu knew it (if
        Redis is away, the visibility timeout brings it back, to be refused again)."""
        try:
            self.qos._release(raw_message["properties"]["delivery_tag"])
        except Exception as exc:
            log.warning("event=refused_record_kept error=%r", str(exc))

    def _take_on_full_redis(self) -> bool:
        """Redis refused the take for memory (nothing was moved): pop the message the
        old way, so that the delivery refuses it for memory as before (a chunk recorded
        failed, the queue drains, memory comes back)."""
        self._take_next = True
        with self.conn_or_acquire() as client:
            for key, queue in self._take_order(list(self.active_queues)):
                item = client.rpop(key)
                if item is not None:
                    self.connection._deliver(loads(bytes_to_str(item)), queue)
                    return True
        raise Empty()

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's publish, then a token on the queue's bell (the module docstring), in
        one round trip. The publish fails only for its own commands: a bell Redis
        refused (full) costs a wake-up, not a second copy of the message."""
        batch = kwargs.get("_publish_batch")
        if batch is not None or not self._takes_atomically:
            super()._put(queue, message, **kwargs)
            if batch is not None and self._takes_atomically:
                ring(batch, queue)
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            pipe.lpush(key, dumps(message))
            if self._expires and queue in self._expires:
                for pri in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, pri), self._expires[queue])
            own = len(pipe)
            ring(pipe, queue)
            for result in pipe.execute(raise_on_error=False)[:own]:
                if isinstance(result, Exception):
                    raise result

    def _do_restore_message(
        self, payload: Any, exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
    ) -> None:
        """kombu's restore (a reject, a reclaim, the visibility timeout), ringing the bell
        of each queue the message goes back to."""
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
        if self._takes_atomically:
            for queue in self._lookup(exchange, routing_key):
                ring(pipe, queue)

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any
    ) -> Any:
        if no_ack:  # nobody acknowledges these: the take must not record them
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
