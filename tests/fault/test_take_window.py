"""A worker that dies right after taking a message loses nothing (tasks.guards.taking).

kombu's BRPOP removes a message from its queue before the worker records it as taken;
a worker SIGKILLed between the two took the message with it for good. Measured: a
churn soak on a loaded machine ended at 124 of 125 chunks that way. Here the take
records the message with its holder in the same step, so the worker's death leaves it
recorded, and the reclaim of a live worker gives it back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kombu import Connection
from kombu.transport import redis as kombu_redis

from tasks.guards.holders import HOLDERS_KEY, holder_of
from tasks.guards.taking import bell_key
from tasks.jobs.deliveries import worker_id
from tasks.jobs.reclaim import give_back, lapsed
from tasks.routing import EMBED_TASK, queue_for
from tests.fault.conftest import HASH, wait_for

pytestmark = pytest.mark.fault

MODEL = "hash-model"


def _send_chunk(app: Any, task_id: str) -> None:
    app.send_task(
        EMBED_TASK, kwargs={"job_id": "j", "index": 0}, queue=queue_for(MODEL), task_id=task_id
    )


def _take_and_die(channel: Any, queue: str) -> None:
    """Start the channel's take (kombu's BRPOP for the stock channel) as a worker's poll
    does, then drop the connection without reading the reply: a worker SIGKILLed the
    moment Redis answered."""
    channel.basic_consume(queue, no_ack=False, callback=lambda message: None, consumer_tag="t")
    client = channel.client  # the poll's own connection, as kombu's poller opens it
    connection = client.connection = client.connection_pool.get_connection()
    connection.connect()
    channel._brpop_start()
    time.sleep(0.2)  # Redis has answered (the queue is empty below); nobody reads it
    connection.disconnect()


def test_a_worker_that_dies_after_a_take_leaves_the_message_recorded_and_reclaimable(make_fleet):
    fleet = make_fleet({MODEL: HASH})
    app, redis, queue = fleet.client.app, fleet.redis(), queue_for(MODEL)

    # Given a chunk message on its queue, which rang the queue's bell
    _send_chunk(app, "j.0")
    assert redis.llen(queue) == 1
    assert redis.llen(bell_key(queue)) == 1

    # When a consumer of this transport takes it and dies before reading the reply
    with app.connection_for_read() as conn:
        _take_and_die(conn.default_channel, queue)

    # Then the message is off the queue, recorded as taken, held by that consumer
    wait_for(lambda: redis.llen(queue) == 0, 5, "the take")
    (tag,) = redis.hkeys("unacked")
    assert redis.zscore("unacked_index", tag) is not None
    assert holder_of(redis.hget(HOLDERS_KEY, tag)) == (worker_id(), "j.0")

    # ... and, its heartbeat absent, a live worker's reclaim puts it back on its queue
    held = lapsed(redis)
    assert [(h.tag, h.task_id) for h in held] == [(tag.decode(), "j.0")]
    assert give_back(app.connection_for_write, held) == 1
    assert redis.llen(queue) == 1
    assert redis.hlen("unacked") == redis.hlen(HOLDERS_KEY) == 0
    assert redis.llen(bell_key(queue)) >= 1  # the give-back rang the bell too


def test_the_same_death_under_kombus_brpop_loses_the_message(make_fleet):
    """What the take closes: the stock channel leaves the message in no list and no
    hash (if kombu ever records before it pops, this test says the gap is gone)."""
    fleet = make_fleet({MODEL: HASH})
    app, redis, queue = fleet.client.app, fleet.redis(), queue_for(MODEL)
    _send_chunk(app, "j.0")

    with Connection(fleet.server.url, transport=kombu_redis.Transport) as conn:
        _take_and_die(conn.default_channel, queue)

    wait_for(lambda: redis.llen(queue) == 0, 5, "the BRPOP")
    assert redis.hlen("unacked") == redis.hlen(HOLDERS_KEY) == 0
