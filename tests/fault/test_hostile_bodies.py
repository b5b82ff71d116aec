"""Item 1 of issue 14: a body that kombu decodes but Celery's trace setup cannot use
(``"str"``, ``[[], {...}, "x"]``, ...) must be refused (acked, counted, logged) and
never stop the worker: after every batch the same worker serves a normal job."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import pytest

from producers.server import free_port
from tasks.routing import queue_for
from tests.fault.conftest import HASH, wait_for
from tests.fault.hostile_bodies import hostile_messages
from tests.fault.malformed import envelope
from tests.fault.test_bad_input import REFUSED
from tests.plugins import hash_vector

pytestmark = pytest.mark.fault

MODEL = "hash-model"
#: Log lines of messages refused without running.
UNRUN = re.compile(r"event=message_refused|Received invalid task message|Can't decode message")


def refused_counter(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    (line,) = [x for x in text.splitlines() if x.startswith("embedfleet_messages_refused_total")]
    return float(line.split()[-1])


@pytest.fixture(scope="module")
def fleet(make_module_fleet):
    fleet = make_module_fleet({MODEL: HASH})
    fleet.metrics_port = free_port()
    fleet.ready(fleet.worker(concurrency=1, EMBEDFLEET_METRICS_PORT=str(fleet.metrics_port)))
    return fleet


def serves_a_job(fleet, tag: str) -> None:
    texts = [f"{tag} text {i}" for i in range(6)]
    vectors = fleet.client.submit(texts, model=MODEL, max_texts=3).wait(timeout=60)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))


def drained(redis, queue: str) -> bool:
    return redis.llen(queue) == 0 and redis.hlen("unacked") == 0


@pytest.mark.parametrize(
    "body", [b'"str"', b'[[], {"job_id": "j", "index": 0}, "x"]'], ids=["str", "embed-str"]
)
def test_the_reported_bodies_do_not_stop_the_worker(fleet, body: bytes):
    # Given the two bodies of the report, as JSON envelopes pushed with LPUSH
    queue, redis = queue_for(MODEL), fleet.redis()
    redis.lpush(queue, envelope(queue, body, "application/json", "utf-8"))
    # Then a normal job submitted after it completes, and nothing stays unacked
    serves_a_job(fleet, body.decode())
    wait_for(lambda: drained(redis, queue), 30, "a drained queue")
    (worker,) = fleet.workers
    assert worker.proc.poll() is None


def test_fuzzed_bodies_are_refused_and_worker_keeps_serving(fleet):
    (worker,) = fleet.workers
    queue, redis = queue_for(MODEL), fleet.redis()
    messages = hostile_messages(queue, MODEL)
    assert len(messages) >= 200
    log_before = worker.log()
    batch = 40
    for start in range(0, len(messages), batch):
        items = [item for _, item in messages[start : start + batch]]
        redis.lpush(queue, *items)
        serves_a_job(fleet, f"batch {start}")
        wait_for(lambda: drained(redis, queue), 60, f"batch {start} drained")
    assert worker.proc.poll() is None
    log = worker.log()[len(log_before) :]
    # each message was refused with one logged line; only the normal jobs' chunks ran
    assert len(REFUSED.findall(log)) == len(messages)
    # ... and each one refused unrun (not failed inside the task) was counted
    unrun = len(UNRUN.findall(worker.log()))
    assert unrun > 0.9 * len(messages)
    assert refused_counter(fleet.metrics_port) == unrun
    assert log.count("succeeded in") == 2 * len(range(0, len(messages), batch))
