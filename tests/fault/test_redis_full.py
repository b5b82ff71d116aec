"""A full Redis is an error, never a loss.

The test's own server gets a small ``maxmemory`` (``noeviction``, as the fleet runs it):
the producer is refused with an error naming Redis memory and records the chunks it could
not send; the worker keeps serving and fails each chunk it could not record or store,
naming Redis memory (so the queue drains and memory comes back); once there is room,
``retry`` completes every row, right."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid

import numpy as np
import pytest
from redis.exceptions import OutOfMemoryError

from producers.errors import UsageError
from tasks.contract import catalog
from tests.fault.conftest import HASH, wait_for
from tests.plugins import hash_vector

pytestmark = pytest.mark.fault

MB = 2**20


def heartbeat_of(redis, worker) -> float:
    """The catalog heartbeat time of ``worker`` (0 when it has no entry)."""
    for raw in redis.hgetall(catalog.CATALOG_KEY).values():
        entry = json.loads(raw)
        if worker.name in str(entry.get("worker")):
            return float(entry.get("heartbeat", 0))
    return 0.0


def fill(redis) -> bool:
    """Write 1 KB keys until Redis refuses one for memory; True."""
    with pytest.raises(OutOfMemoryError):
        for _ in range(100_000):
            redis.set(f"filler:{uuid.uuid4().hex}", b"\0" * 1024)
    return True


def ended(job) -> bool:
    status = job.status()
    return status["done"] + status["failed"] == status["total"]


def test_a_full_redis_fails_the_submit_clearly_and_retry_completes_it(make_fleet):
    # Given a worker, paused while a job is sent, and a server with 2 MB of room left
    fleet = make_fleet({"hash": HASH}, visibility_s=None)
    worker = fleet.worker()
    fleet.ready(worker)
    redis = fleet.redis()
    texts = [f"row {i} " + "x" * 300 for i in range(20_000)]  # ~6 MB of text
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) + 2 * MB)

        # When a job bigger than the room is submitted
        with pytest.raises(UsageError) as caught:
            fleet.client.submit(texts, model="hash", max_texts=50)
    finally:
        worker.proc.send_signal(signal.SIGCONT)

    # Then the producer names Redis memory, not a connection problem
    message = str(caught.value)
    assert "Redis is out of memory" in message and "maxmemory" in message, message
    assert "unreachable" not in message
    job_id = re.match(r"job (\w+):", message).group(1)
    job = fleet.client.job(job_id)
    # ... records each chunk it could not send (the resumed worker may already have
    # failed one it took, naming Redis memory too)
    errors = job.status()["errors"]
    assert all("RedisMemoryFull" in e["error"] for e in errors), errors
    unsent = [e for e in errors if "not sent: RedisMemoryFull" in e["error"]]
    assert unsent, errors

    # ... the worker runs what was sent, and every chunk ends done or failed, none lost
    wait_for(lambda: ended(job), 90, "every chunk of the job done or failed")
    status = job.status()
    assert all("Redis is out of memory" in e["error"] for e in status["errors"]), status
    assert worker.proc.poll() is None
    log = worker.log()
    assert "Unrecoverable error" not in log and "event=message_refused" not in log

    # When Redis has room again and the job is retried
    redis.config_set("maxmemory", 0)
    assert job.retry(texts) >= len(unsent)

    # Then every row is there and right
    vectors = job.wait(timeout=90)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    assert job.status()["failed"] == 0
    assert worker.proc.poll() is None


def test_a_worker_fails_what_a_full_redis_will_not_let_it_hold_and_lives(make_fleet):
    # Given a job waiting in its queue while the worker is paused
    fleet = make_fleet({"hash": HASH}, visibility_s=None)
    worker = fleet.worker()
    fleet.ready(worker)
    redis = fleet.redis()
    texts = [f"row {i} of the full-redis test" for i in range(100)]
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        job = fleet.client.submit(texts, model="hash", max_texts=10)
        # ... and a server filled past its maxmemory (1 MB pieces: well past it)
        redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) + 4 * MB)
        with pytest.raises(OutOfMemoryError):
            for _ in range(100):
                redis.append("filler", b"\0" * MB)
    finally:
        worker.proc.send_signal(signal.SIGCONT)

    # When the worker takes chunks it cannot even record as taken
    wait_for(lambda: ended(job), 60, "every chunk of the job done or failed")

    # Then each is failed naming Redis memory (none silently dropped), the worker lives
    status = job.status()
    assert status["state"] == "FAILURE" and status["failed"] == status["total"], status
    for error in status["errors"]:
        assert error["error"].startswith("RedisMemoryFull: Redis is out of memory"), error
        assert f"embedfleet retry {job.id}" in error["error"]
    assert "event=redis_full" in worker.log()
    assert worker.proc.poll() is None
    assert redis.hlen("unacked") == 0

    # ... and it still shows as alive: its catalog heartbeat goes on while Redis is full
    # (kept full to the last small write: what the failed chunks free is taken again)
    full_since = time.time()
    wait_for(
        lambda: fill(redis) and heartbeat_of(redis, worker) > full_since,
        catalog.LIVE_S,  # what a worker may go without a heartbeat and still count as live
        "a catalog heartbeat written on a full Redis",
    )
    assert worker.name in " ".join(catalog.live_workers(redis, "hash"))

    # When memory is freed and the job retried, it completes on the same worker
    redis.delete("filler", *redis.keys("filler:*"))
    assert job.retry() == status["total"]
    vectors = job.wait(timeout=90)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    assert worker.proc.poll() is None
    assert "Unrecoverable error" not in worker.log()


def test_a_dataset_job_on_a_full_redis_fails_clearly_and_retry_completes_it(make_fleet, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Given a dataset job whose first window waits while the worker is paused
    fleet = make_fleet({"hash": HASH}, visibility_s=None)
    worker = fleet.worker()
    fleet.ready(worker)
    redis = fleet.redis()
    texts = [f"row {i} of the full-redis dataset test" for i in range(120)]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        job = fleet.client.submit_dataset(
            str(tmp_path / "in.txt"), "hash", str(out) + "/", chunk_rows=10, window=4
        )
        # ... and a server filled past its maxmemory
        redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) + 4 * MB)
        with pytest.raises(OutOfMemoryError):
            for _ in range(100):
                redis.append("filler", b"\0" * MB)
    finally:
        worker.proc.send_signal(signal.SIGCONT)

    # When the worker meets the full Redis; Then the job fails naming Redis memory,
    # instead of waiting for ever for chunks that could not be sent
    wait_for(lambda: job.status()["state"] == "FAILURE", 60, "the job to fail")
    errors = job.status()["errors"]
    assert errors and all("Redis is out of memory" in e["error"] for e in errors), errors
    assert worker.proc.poll() is None

    # When memory is freed and the job retried, every row is written exactly once
    redis.delete("filler")
    assert job.retry() >= 1
    job.wait(timeout=90)
    table = pa.concat_tables([pq.read_table(f) for f in sorted(out.glob("part-*.parquet"))])
    rows = table.column("row").to_numpy()
    assert sorted(rows.tolist()) == list(range(120))
    order = np.argsort(rows)
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)[order]
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    assert job.status()["state"] == "SUCCESS" and worker.proc.poll() is None
