"""A small dataset job is cut so every live worker thread serving its model gets several
chunks (tasks.io.plan.chunk_rows_for): 1,000 rows on two workers of one thread each are
written by both, as the delivery records show (``embedfleet:delivered-to:<chunk>:0``)."""

from __future__ import annotations

import pytest

from producers import EmbeddingClient
from tasks.contract import catalog
from tasks.io.plan import CHUNKS_PER_THREAD
from tasks.jobs import deliveries, jobstore
from tests.support import WorkerProcess, write_config

pytestmark = pytest.mark.integration

MODEL = "size-slow"


@pytest.fixture(scope="module")
def two_workers(redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sizing")
    entry = {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.01}
    config = write_config(folder / "models.json", {MODEL: entry})
    client = EmbeddingClient(config_source=str(config))
    env = {"EMBEDFLEET_TEST_SLOW_S": "0.002"}  # 2 ms a text: 2 s of work for 1,000 rows
    workers = [
        WorkerProcess(config, models=MODEL, log_dir=folder, env=env).wait_ready(client.app)
        for _ in range(2)
    ]
    yield client
    for w in workers:
        w.stop()


def test_a_thousand_rows_use_both_worker_threads(two_workers, tmp_path):
    client = two_workers
    assert catalog.live_threads(client.redis, MODEL) == 2
    source = tmp_path / "rows.txt"
    source.write_text("".join(f"row {i}\n" for i in range(1000)))
    job = client.submit_dataset(str(source), MODEL, str(tmp_path / "out") + "/")
    assert job.record.total >= 2 * CHUNKS_PER_THREAD  # several chunks a thread
    job.wait(timeout=120)
    parts = sorted((tmp_path / "out").glob("part-*.parquet"))
    assert len(parts) == job.record.total
    takers = {
        client.redis.get(deliveries.LAST_PREFIX + jobstore.chunk_task_id(job.id, i) + ":0")
        for i in range(job.record.total)
    }
    assert None not in takers
    assert len(takers) == 2, takers  # both workers wrote parts
    job.delete()
