"""A chunk sent that is nowhere (on no queue, held by no worker, neither done nor
failed: a Redis that crashed before writing its last second, a key deleted) is sent
again by ``retry``; a chunk that is queued or running is not (``tasks.jobs.lost``)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.jobs import lost
from tasks.routing import queue_for
from tests.fault.conftest import HASH, wait_for
from tests.plugins import hash_vector

pytestmark = pytest.mark.fault

MODEL = "hash-model"


def _keys(fleet) -> list[str]:
    """The model queue's lists, one per priority (dataset chunks go at their own)."""
    return lost.queue_keys(fleet.client.app.connection_for_write, queue_for(MODEL))


def _queued(fleet) -> int:
    return sum(fleet.redis().llen(key) for key in _keys(fleet))


def _drop_chunk(fleet, job_id: str, index: int) -> None:
    """Remove chunk ``index`` of ``job_id`` from its queue, as a crash that lost it."""
    redis = fleet.redis()
    for key in _keys(fleet):
        for item in redis.lrange(key, 0, -1):
            if json.loads(item)["headers"]["id"] == f"{job_id}.{index}":
                assert redis.lrem(key, 1, item) == 1
                return
    raise AssertionError(f"chunk {index} of {job_id} is not queued")


def test_retry_sends_again_a_list_chunk_that_is_nowhere_and_nothing_else(make_fleet):
    fleet = make_fleet({MODEL: HASH})
    texts = [f"lost chunk text {i}" for i in range(20)]
    # Given a list job of 5 chunks queued while no worker runs
    job = fleet.client.submit(texts, model=MODEL, max_texts=4)
    assert _queued(fleet) == 5
    # ... whose chunks are all queued: retry finds nothing to send
    assert job.retry() == 0 and _queued(fleet) == 5

    # When chunk 2 is lost, and a worker runs the rest
    _drop_chunk(fleet, job.id, 2)
    fleet.ready(fleet.worker())
    wait_for(lambda: job.status()["done"] == 4, 30, "the 4 chunks left")
    assert job.status()["state"] == "RUNNING"  # and it would stay so

    # Then retry sends that one chunk again and the job ends with every row right
    assert job.retry() == 1
    vectors = job.wait(timeout=30)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    assert job.status()["state"] == "SUCCESS"
    assert "event=chunks_lost" not in fleet.workers[0].log()  # said by the producer


def test_retry_sends_again_a_dataset_chunk_that_is_nowhere(make_fleet, tmp_path):
    fleet = make_fleet({MODEL: HASH})
    texts = [f"lost dataset row {i}" for i in range(60)]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"
    # Given a dataset job of 6 chunks, all sent (window 6), while no worker runs
    job = fleet.client.submit_dataset(
        str(tmp_path / "in.txt"), MODEL, str(out) + "/", chunk_rows=10, window=6
    )
    wait_for(lambda: _queued(fleet) == 6, 30, "6 chunks queued")
    assert job.retry() == 0 and _queued(fleet) == 6

    # When chunk 4 is lost and a worker runs the rest
    _drop_chunk(fleet, job.id, 4)
    fleet.ready(fleet.worker())
    wait_for(lambda: job.status()["done"] == 5, 30, "the 5 chunks left")

    # Then retry sends it again, and every row is in the parts once
    assert job.retry() == 1
    job.wait(timeout=30)
    table = pa.concat_tables([pq.read_table(f) for f in sorted(out.glob("part-*.parquet"))])
    assert sorted(table.column("row").to_pylist()) == list(range(60))
    assert job.status()["state"] == "SUCCESS"
