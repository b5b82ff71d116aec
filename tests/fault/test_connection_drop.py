"""A message BRPOP took while the link broke before kombu recorded it as taken.

BRPOP removes the message from its queue; kombu then records it in the ``unacked`` hash
(the visibility timeout's and our reclaim's only trace of it). A connection lost between
the two (a Redis restart, a network cut) left the message nowhere: a job stayed at 39 of
40 chunks for good in the Redis-restart fault test. The moment cannot be timed from
outside, so the break is injected into that one call (``qos.append``); everything else
is the real transport on a real server.

The atomic take (``tasks.guards.taking``) records a message in the step that takes it,
which closes this gap (``test_take_window.py``); kombu's BRPOP still takes where the
take cannot (a channel with a ``global_keyprefix``), and that path is the one tested
here.
"""

from __future__ import annotations

import uuid

import pytest
import redis as redis_py
from kombu import Connection, Queue

from tasks.guards import transport

pytestmark = pytest.mark.fault


def test_a_message_taken_as_the_link_broke_goes_back_on_its_queue(redis_server, monkeypatch):
    name = f"embed.stranded-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, routing_key=name)
    server = redis_py.Redis.from_url(redis_server.url)
    received = []
    monkeypatch.setattr(transport.Channel, "_takes_atomically", False)
    with Connection(redis_server.url, transport="tasks.guards.transport:Transport") as conn:
        with conn.Producer() as producer:
            producer.publish({"chunk": 7}, routing_key=name, declare=[queue])
        consumer = conn.Consumer(
            queue, callbacks=[lambda body, msg: (received.append(body), msg.ack())]
        )
        with consumer:
            qos = consumer.channel.qos
            record_taken = qos.append

            def link_breaks_once(message, delivery_tag):
                monkeypatch.setattr(qos, "append", record_taken)  # the next try works
                raise redis_py.ConnectionError("Connection closed by server (injected)")

            monkeypatch.setattr(qos, "append", link_breaks_once)
            # When the worker takes the message and the link breaks before it is recorded
            with pytest.raises(redis_py.ConnectionError):
                conn.drain_events(timeout=5)
            # Then it is in no queue and no hash, but the process still holds it
            assert server.llen(name) == 0 and not received
            assert len(transport.STRANDED) == 1
            # When the consumer polls again (the link is back)
            conn.drain_events(timeout=5)
    # Then the message was put back on its queue and delivered, once
    assert received == [{"chunk": 7}]
    assert len(transport.STRANDED) == 0 and server.llen(name) == 0
