"""docs/examples/etl_task.py against a real fleet: a task that timed out and is run again
gets the same job, queues nothing twice, and verifies the output; a part lost after
success is rewritten by the next run; run as a script it prints the same job each time."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid

import pytest

from producers import EmbeddingClient
from tasks.jobs import jobstore
from tests.support import ROOT, WorkerProcess, write_config

pytestmark = pytest.mark.integration

MODEL = "etl-slow"
EXAMPLE = ROOT / "docs" / "examples" / "etl_task.py"


def load_example():
    spec = importlib.util.spec_from_file_location("etl_task", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("etl")
    entry = {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.01}
    config = write_config(folder / "models.json", {MODEL: entry})
    client = EmbeddingClient(config_source=str(config))
    env = {"EMBEDFLEET_TEST_SLOW_S": "0.005"}  # 300 rows: ~1.5 s of work
    worker = WorkerProcess(config, models=MODEL, log_dir=folder, env=env).wait_ready(client.app)
    yield client, config
    worker.stop()


def write_rows(path, n: int) -> str:
    path.write_text(
        "".join(json.dumps({"text": f"row {i}", "id": f"r{i}"}) + "\n" for i in range(n))
    )
    return str(path)


def test_a_task_that_timed_out_is_retried_into_the_same_job(fleet, tmp_path):
    client, _ = fleet
    etl = load_example()
    source = write_rows(tmp_path / "day.jsonl", 300)
    out = str(tmp_path / "out") + "/"
    run_id = f"scheduled__{uuid.uuid4().hex}"
    jobs_before = client.redis.zcard(jobstore.JOBS_KEY)

    # The first try runs out of its deadline while the job runs
    with pytest.raises(TimeoutError):
        etl.run(client, run_id, source, out, MODEL, deadline_s=0.2)
    # The scheduler's retry gets the same job, waits for it and verifies the output
    summary = etl.run(client, run_id, source, out, MODEL, deadline_s=120)
    assert summary["rows"] == 300
    assert client.redis.zcard(jobstore.JOBS_KEY) == jobs_before + 1  # one job, not two
    assert etl.verify(client, client.job(summary["job"])) == []

    # A part lost after success: the next run rewrites exactly it
    parts = sorted((tmp_path / "out").glob("part-*.parquet"))
    kept = {p.name: p.stat().st_mtime_ns for p in parts[1:]}
    parts[0].unlink()
    again = etl.run(client, run_id, source, out, MODEL, deadline_s=120)
    assert again["job"] == summary["job"] and parts[0].exists()
    assert {p.name: p.stat().st_mtime_ns for p in parts[1:]} == kept


def test_the_script_prints_the_same_job_when_run_twice(fleet, tmp_path):
    _, config = fleet
    source = write_rows(tmp_path / "day.jsonl", 50)
    argv = [sys.executable, str(EXAMPLE), "--run-id", uuid.uuid4().hex, "--model", MODEL]
    argv += ["--input", source, "--output", str(tmp_path / "out") + "/", "--deadline", "120"]
    env = {
        **os.environ,
        "EMBEDFLEET_MODEL_CONFIG": str(config),
        "PYTHONPATH": str(ROOT),
    }
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout)["job"] == json.loads(second.stdout)["job"]
    assert json.loads(second.stdout)["rows"] == 50
