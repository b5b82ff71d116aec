"""Unacked messages of a worker whose heartbeat lapsed go back on their queue, once,
through kombu's own Redis transport on a real server; a worker that only looked dead
cannot undo the copy another worker took since."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection, Exchange, Queue

from tasks.guards.holders import HOLDERS_KEY, holder_of
from tasks.jobs import reclaim
from tasks.jobs.deliveries import ALIVE_PREFIX, worker_id


@pytest.fixture
def broker(redis_server):
    client = redis_server.client()
    name = f"reclaim-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)

    def connect():
        return Connection(redis_server.url, transport="tasks.guards.transport:Transport")

    with connect() as conn:
        queue(conn.default_channel).declare()
        conn.Producer().publish(
            {"n": 1}, exchange=queue.exchange, routing_key=name, headers={"id": "job7.3"}
        )
    client.delete(ALIVE_PREFIX + worker_id())  # this process: no heartbeat, i.e. lapsed
    yield client, connect, queue
    client.delete("unacked", "unacked_index", HOLDERS_KEY)


def take(connect, queue):
    conn = connect()
    message = queue(conn.default_channel).get(no_ack=False)
    assert message is not None, "the queue is empty"
    return conn, message


def test_a_taken_message_is_recorded_with_its_worker(broker):
    client, connect, queue = broker
    conn, message = take(connect, queue)
    tag = message.delivery_tag
    assert holder_of(client.hget(HOLDERS_KEY, tag)) == (worker_id(), "job7.3")
    message.ack()
    assert client.hget(HOLDERS_KEY, tag) is None and not client.hexists("unacked", tag)
    conn.release()


def test_a_lapsed_workers_message_goes_back_after_two_looks(broker):
    # Given a message taken by a worker whose heartbeat is missing
    client, connect, queue = broker
    conn, message = take(connect, queue)
    held = reclaim.lapsed(client, "job7")
    assert [(h.tag, h.task_id) for h in held] == [(message.delivery_tag, "job7.3")]
    assert reclaim.lapsed(client, "job8") == []
    watchdog = reclaim.Reclaimer(client, connect, interval_s=5.0)

    # When the watchdog looks twice; Then the first look only suspects, the second gives back
    assert watchdog.check_once() == 0
    assert client.hexists("unacked", message.delivery_tag)
    assert watchdog.check_once() == 1
    assert not client.hexists("unacked", message.delivery_tag)
    assert client.hlen(HOLDERS_KEY) == 0
    # ... and the message is on its queue again, the same one
    conn2, again = take(connect, queue)
    assert again.payload == {"n": 1} and again.delivery_tag == message.delivery_tag
    # ... while the lock is free for the next look
    assert client.get(reclaim.LOCK_KEY) is None

    # When another worker holds it now and the old one acknowledges late
    client.hset(HOLDERS_KEY, again.delivery_tag, "other:1:x job7.3")
    message.ack()
    # Then the other worker's copy stays unacked (it can still be given back if it dies)
    assert client.hexists("unacked", again.delivery_tag)
    conn.release()
    conn2.release()


def test_a_live_workers_message_stays_and_a_held_lock_waits(broker):
    client, connect, queue = broker
    conn, message = take(connect, queue)
    client.set(ALIVE_PREFIX + worker_id(), "1", px=60_000)
    watchdog = reclaim.Reclaimer(client, connect, interval_s=5.0)
    assert watchdog.check_once() == 0 and watchdog.check_once() == 0
    assert client.hexists("unacked", message.delivery_tag)

    client.delete(ALIVE_PREFIX + worker_id())
    client.set(reclaim.LOCK_KEY, "someone-else", px=60_000)
    assert watchdog.check_once() == 0 and watchdog.check_once() == 0  # not its turn
    client.delete(reclaim.LOCK_KEY)
    assert watchdog.check_once() == 1
    conn.release()


def test_retry_gives_back_a_dead_workers_chunks_of_that_job_at_once(broker):
    client, connect, queue = broker
    conn, message = take(connect, queue)
    assert reclaim.lapsed_chunks(client, "job7") == [3]  # what `status` shows
    assert reclaim.reclaim_job(client, connect, "job8") == 0
    assert reclaim.reclaim_job(client, connect, "job7") == 1
    assert not client.hexists("unacked", message.delivery_tag)
    assert reclaim.lapsed_chunks(client, "job7") == []
    conn.release()


def test_status_text_names_the_chunks_waiting_on_a_dead_worker():
    from producers.output import status_text

    status = {"id": "j1", "model": "m", "state": "RUNNING", "done": 1, "total": 4}
    text = status_text({**status, "failed": 0, "errors": [], "waiting_on_dead_worker": [2, 3]})
    assert "2 chunk(s) wait on a dead worker (2, 3)" in text
    assert "`embedfleet retry j1`" in text
    assert "dead worker" not in status_text({**status, "failed": 0, "errors": []})
