"""A small dataset job is cut so every live worker thread serving its model gets several
chunks (tasks.io.plan.chunk_rows_for): 1,000 rows on two workers of one thread each are
written by both, as the delivery records show (``embedfleet:delivered-to:<chunk>:0``)."""

from __future__ import annotations

import pytest

from producers import EmbeddingClient
from tasks.contract import catalog
from tasks.io.plan import CHUNKS_PER_THREAD
from tests.support import WorkerProcess, run_cli, stop_all, write_config

pytestmark = pytest.mark.integration

MODEL = "size-slow"


@pytest.fixture(scope="module")
def two_workers(redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sizing")
    entry = {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.01}
    config = write_config(folder / "models.json", {MODEL: entry})
    client = EmbeddingClient(config_source=str(config))
    env = {"EMBEDFLEET_TEST_SLOW_S": "0.002"}  # 2 ms a text: 2 s of work for 1,000 rows
    workers = [WorkerProcess(config, models=MODEL, log_dir=folder, env=env) for _ in range(2)]
    for w in workers:  # both started first: they boot side by side
        w.wait_ready(client.app)
    yield client, workers
    stop_all(workers)


def test_a_thousand_rows_use_both_worker_threads(two_workers, tmp_path):
    client, workers = two_workers
    assert catalog.live_threads(client.redis, MODEL) == 2
    source = tmp_path / "rows.txt"
    source.write_text("".join(f"row {i}\n" for i in range(1000)))
    job = client.submit_dataset(str(source), MODEL, str(tmp_path / "out") + "/")
    assert job.record.total >= 2 * CHUNKS_PER_THREAD  # several chunks a thread
    job.wait(timeout=120)
    parts = sorted((tmp_path / "out").glob("part-*.parquet"))
    assert len(parts) == job.record.total
    done_by = [
        {
            i
            for i in range(job.record.total)
            if f"dataset_chunk_done job={job.id} chunk={i} " in w.log()
        }
        for w in workers
    ]
    assert all(done_by), done_by  # both workers wrote parts
    assert done_by[0] | done_by[1] == set(range(job.record.total))
    job.delete()


def test_list_job_status_has_times_and_jobs_shows_kind_and_rows(two_workers, tmp_path):
    client, _ = two_workers
    job = client.submit([f"text {i}" for i in range(300)], MODEL, max_texts=100)
    job.wait(timeout=120)
    status = job.status()
    assert status["kind"] == "list" and status["state"] == "SUCCESS"
    assert status["created"] <= status["started"] <= status["finished"]
    assert status["rows_done"] == 300 and status["eta_s"] is None
    env = {"EMBEDFLEET_MODEL_CONFIG": str(tmp_path / "unused.json")}
    shown = run_cli("status", job.id, env=env)
    assert shown.returncode == 0 and "finished 20" in shown.stdout and "300/300" in shown.stdout
    listed = run_cli("jobs", env=env)
    line = next(x for x in listed.stdout.splitlines() if x.startswith(job.id))
    assert line.split()[1] == "list" and line.split()[-1] == "300/300"
    job.delete()
