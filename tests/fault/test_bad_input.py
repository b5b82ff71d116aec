"""Bad input: over a thousand malformed messages pushed straight onto a model queue are
each refused with a logged error, nothing is unpickled, nothing is left behind, and
the worker keeps serving; and the documented limits are enforced with clear errors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from producers.errors import InputError
from tasks.contract.wire import MAX_CHARS_PER_TEXT, unpack_embeddings
from tasks.routing import EMBED_TASK, queue_for
from tests.fault.conftest import HASH, wait_for
from tests.fault.malformed import malformed_messages, pickle_payload
from tests.plugins import hash_vector

pytestmark = pytest.mark.fault

MODEL = "hash-model"
#: Bytes of text per chunk that this module's worker accepts (EMBEDFLEET_MAX_CHUNK_BYTES).
CHUNK_BYTES = 1 << 20
#: Log lines that say a message was refused, one kind per way of refusing.
REFUSED = re.compile(
    r"event=message_refused|Received unregistered task|Received invalid task message"
    r"|Can't decode message body|raised unexpected: (?:InvalidRequest|TypeError)"
)


@pytest.fixture(scope="module")
def fleet(make_module_fleet):
    fleet = make_module_fleet({MODEL: HASH}, env={"EMBEDFLEET_MAX_CHUNK_BYTES": str(CHUNK_BYTES)})
    fleet.ready(fleet.worker())
    return fleet


def test_malformed_messages_are_refused_and_worker_keeps_serving(fleet, tmp_path: Path):
    (worker,) = fleet.workers
    queue, redis = queue_for(MODEL), fleet.redis()
    # Given 1,000+ malformed messages, whose pickle payloads would create a marker file
    control, marker = tmp_path / "control", tmp_path / "unpickled"
    pickle.loads(pickle_payload(control)).close()  # (the payload works when unpickled)
    assert control.exists()
    messages = malformed_messages(queue, MODEL, marker, CHUNK_BYTES)
    assert len(messages) >= 1000
    before = len(REFUSED.findall(worker.log()))

    # When they are pushed straight onto the model's queue
    redis.lpush(queue, *[item for _, item in messages])

    # Then each is refused with a logged error, and none is left queued or unacked
    wait_for(
        lambda: len(REFUSED.findall(worker.log())) - before >= len(messages),
        120,
        f"{len(messages)} refusals in the worker log",
    )
    wait_for(lambda: redis.llen(queue) == 0 and redis.hlen("unacked") == 0, 30, "a drained queue")
    log = worker.log()
    assert "succeeded in" not in log  # no malformed message ran to success
    assert "Refusing to deserialize untrusted content of type pickle" in log
    assert not marker.exists()  # nothing was ever unpickled
    # ... and the worker is alive and serves a normal job
    assert worker.proc.poll() is None
    texts = [f"a normal text {i}" for i in range(20)]
    vectors = fleet.client.submit(texts, model=MODEL, max_texts=4).wait(timeout=30)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))


def test_limits_are_enforced_with_clear_errors(fleet, monkeypatch: pytest.MonkeyPatch):
    client = fleet.client
    # Texts per job: refused at submit, naming the limit
    monkeypatch.setattr("producers.client.MAX_TEXTS_PER_JOB", 10)
    with pytest.raises(InputError, match="11 texts in one job; the limit is 10"):
        client.submit([f"t{i}" for i in range(11)], model=MODEL)
    monkeypatch.undo()

    # Characters per text: a longer text is embedded as its first MAX_CHARS_PER_TEXT
    # characters, by the producer and by a worker sent the long text directly
    long_text = "abcdefghij" * (MAX_CHARS_PER_TEXT // 10 + 5000)
    cut = hash_vector(long_text[:MAX_CHARS_PER_TEXT])
    np.testing.assert_array_equal(client.submit([long_text], model=MODEL).wait(timeout=30)[0], cut)
    direct = client.app.send_task(
        EMBED_TASK,
        kwargs={"job_id": "direct", "index": 0, "model": MODEL, "texts": [long_text]},
        queue=queue_for(MODEL),
    )
    np.testing.assert_array_equal(unpack_embeddings(direct.get(timeout=30))[0], cut)

    # Bytes per chunk: a chunk over EMBEDFLEET_MAX_CHUNK_BYTES fails, naming the limit,
    # and the job records it; the other chunks of the job are done
    big = [f"{i:03d}" + "x" * (MAX_CHARS_PER_TEXT - 3) for i in range(12)]  # 1.2 MB
    job = client.submit(big + ["small"], model=MODEL, max_texts=len(big))
    with pytest.raises(Exception, match="EMBEDFLEET_MAX_CHUNK_BYTES"):
        job.wait(timeout=30)
    status = job.status()
    assert (status["state"], status["total"], status["done"]) == ("FAILURE", 2, 1)
    assert f"more than {CHUNK_BYTES} bytes of text" in status["errors"][0]["error"]
