"""`embedfleet jobs` and `embedfleet cancel` against a real worker.

The worker runs one chunk at a time, and that chunk waits at a gate the test opens
(tests/gate_model.py), so which chunks are done, running or queued is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from producers import EmbeddingClient
from tasks.jobs import jobstore
from tests.plugins import hash_vector
from tests.support import WorkerProcess, run_cli, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MODEL = "gated-hash"


@pytest.fixture(scope="module")
def gated(redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cancel")
    entry = {"type": "tests.gate_model:GateModel", "model_path": "none", "RAM": 0.01}
    config = write_config(folder / "models.json", {MODEL: entry})
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(config, concurrency=1, log_dir=folder).wait_ready(client.app)
    yield client, folder
    worker.stop()


def test_cancel_revokes_queued_chunks_and_keeps_done_work(gated, tmp_path):
    client, folder = gated
    gate = folder / "gate"
    # Given a job of 10 chunks whose first chunk is running, held at the gate
    texts = [f"GATE:{gate} text number {i:03d}" for i in range(40)]
    job = client.submit(texts, model=MODEL, max_texts=4)
    assert job.record.total == 10
    wait_for(Path(f"{gate}.entered").exists, 60, "a chunk at the gate")

    # When the job is cancelled from the CLI, then the running chunk is let finish
    proc = run_cli("cancel", job.id)
    assert proc.returncode == 0, proc.stderr
    assert "10 chunk(s)" in proc.stdout  # every chunk not done was revoked
    gate.touch()

    # Then the running chunk completes and every queued chunk is revoked, unrun
    def states() -> list[str]:
        return [client.app.AsyncResult(jobstore.chunk_task_id(job.id, i)).state for i in range(10)]

    wait_for(
        lambda: sorted(states()) == ["REVOKED"] * 9 + ["SUCCESS"], 60, lambda: f"states: {states()}"
    )
    done, failed = jobstore.progress(client.redis, job.id)
    assert len(done) == 1 and not failed

    # the job reads CANCELLED, with its progress, in `status` and in `jobs`
    proc = run_cli("status", job.id, "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert (status["state"], status["done"], status["total"]) == ("CANCELLED", 1, 10)
    proc = run_cli("jobs", "--json", "--limit", "50")
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in json.loads(proc.stdout) if r["id"] == job.id)
    assert (row["state"], row["done"], row["total"]) == ("CANCELLED", 1, 10)
    table = run_cli("jobs").stdout
    assert any(
        job.id in line and "CANCELLED" in line and "1/10" in line for line in table.splitlines()
    )

    # and the work that was done stays retrievable, in input order, by `embedfleet result`
    # (--partial is automatic for a cancelled job: the rows not done are NaN, and it says so)
    out = tmp_path / "partial.npy"
    proc = run_cli("result", job.id, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "was cancelled" in proc.stderr and "NaN" in proc.stderr, proc.stderr
    proc = run_cli("result", job.id, "--output", str(out), "--partial")  # the same, asked for
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    (index,) = done
    rows = job.record.chunk_rows(index)
    expected = np.stack([hash_vector(texts[r]) for r in rows])
    np.testing.assert_array_equal(vectors[rows], expected)
    others = np.setdiff1d(np.arange(len(texts)), rows)
    assert np.isnan(vectors[others]).all()


def test_a_worker_started_after_a_cancel_runs_none_of_the_jobs_chunks(gated, tmp_path):
    """Workers start without Celery's mingle (no 1 s wait for the other workers' revoked
    lists at every start): a new worker learns of a cancel from the job's record, so a
    chunk revoked before it started still never runs."""
    client, folder = gated
    gate = tmp_path / "gate"
    # Given the only worker held at a gate by one job, and a second job queued behind it
    holder = client.submit([f"GATE:{gate} holder"], model=MODEL)
    wait_for(Path(f"{gate}.entered").exists, 60, "the holder at the gate")
    queued = client.submit([f"queued text {i:03d}" for i in range(12)], model=MODEL, max_texts=4)
    # When the queued job is cancelled, and only then a second worker starts
    assert client.job(queued.id).cancel() == 3
    late = WorkerProcess(folder / "models.json", log_dir=tmp_path).wait_ready(client.app)
    try:
        gate.touch()
        holder.wait(timeout=60)

        # Then every chunk of the cancelled job was taken off the queue and none ran
        def settled() -> bool:
            return client.redis.llen(f"embed.{MODEL}") == 0 and all(
                client.app.AsyncResult(jobstore.chunk_task_id(queued.id, i)).state
                in ("REVOKED", "FAILURE")
                for i in range(3)
            )

        wait_for(settled, 60, "the cancelled job's chunks settled")
        done, _ = jobstore.progress(client.redis, queued.id)
        assert not done
        assert client.job(queued.id).status()["state"] == "CANCELLED"
        # the new worker refused them, each on one line: a planned refusal, not a fault
        refusals = [line for line in late.log().splitlines() if "was cancelled" in line]
        assert len(refusals) == 3 and "Traceback" not in late.log(), late.log()
    finally:
        late.stop()
