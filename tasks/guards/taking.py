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

from typing import Any

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
    if hasattr(pipe, "add"):  # kombu's publish batch
        pipe.add("lpush", key, 1)
        pipe.add("ltrim", key, 0, BELL_TOKENS - 1)
        pipe.add("expire", key, BELL_TTL_S)
        return
    pipe.lpush(key, 1)
    pipe.ltrim(key, 0, BELL_TOKENS - 1)
    pipe.expire(key, BELL_TTL_S)
