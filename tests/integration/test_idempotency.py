"""Idempotency keys against a real server and worker: a retried submit gets the job the
first made and queues nothing; racing submits make one job; another request under the
key is refused (exit 2); ``delete`` frees the key and ``status`` then says deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from producers import EmbeddingClient
from producers.errors import UsageError
from tasks.jobs import jobstore
from tests.support import ROOT, WorkerProcess, run_cli, write_config

pytestmark = pytest.mark.integration

MODEL = "idem-hash"
IDLE = "idem-idle"  # configured, served by no worker: its queue shows what was sent


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("idem")
    entry = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}
    config = write_config(folder / "models.json", {MODEL: entry, IDLE: entry})
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(config, models=MODEL, log_dir=folder).wait_ready(client.app)
    yield client, config
    worker.stop()


def jobs_recorded(client: EmbeddingClient) -> int:
    return int(client.redis.zcard(jobstore.JOBS_KEY))


def idle_queue(client: EmbeddingClient) -> int:
    return int(client.redis.llen(f"embed.{IDLE}"))


def texts(n: int, salt: str = "") -> list[str]:
    return [f"{salt} row {i}" for i in range(n)]


def test_retry_while_running_and_after_success_returns_the_one_job(fleet):
    client, _ = fleet
    key = f"run-{uuid.uuid4().hex}"
    # While running (its model has no worker: the chunks wait in the queue)
    queued_before, jobs_before = idle_queue(client), jobs_recorded(client)
    first = client.submit(texts(300), IDLE, max_texts=100, idempotency_key=key)
    assert idle_queue(client) == queued_before + 3
    again = client.submit(texts(300), IDLE, max_texts=100, idempotency_key=key)
    assert again.id == first.id
    assert idle_queue(client) == queued_before + 3  # nothing sent twice
    assert jobs_recorded(client) == jobs_before + 1
    first.cancel()
    first.delete()
    client.redis.delete(f"embed.{IDLE}")

    # After success: the finished job comes back, its vectors gathered from the fleet
    key = f"run-{uuid.uuid4().hex}"
    done = client.submit(texts(50, "ok"), MODEL, idempotency_key=key)
    vectors = done.wait(timeout=60)
    jobs_before = jobs_recorded(client)
    again = client.submit(texts(50, "ok"), MODEL, idempotency_key=key)
    assert again.id == done.id and again.status()["state"] == "SUCCESS"
    assert jobs_recorded(client) == jobs_before
    assert (again.wait(timeout=10) == vectors).all()


def test_submits_racing_with_one_key_make_one_job(fleet):
    client, _ = fleet
    key = f"race-{uuid.uuid4().hex}"
    queued_before, jobs_before = idle_queue(client), jobs_recorded(client)
    start = threading.Barrier(8)
    ids: list[str] = []

    def submit() -> None:
        start.wait()
        ids.append(client.submit(texts(200), IDLE, max_texts=100, idempotency_key=key).id)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert idle_queue(client) == queued_before + 2
    assert jobs_recorded(client) == jobs_before + 1
    client.job(ids[0]).delete()
    client.redis.delete(f"embed.{IDLE}")


def test_cli_processes_racing_then_another_request_exits_2(fleet, tmp_path):
    client, config = fleet
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line {i}\n" for i in range(40)))
    key = f"proc-{uuid.uuid4().hex}"
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "producers.cli", "submit", "--model", MODEL]
    argv += ["--input", str(source), "--idempotency-key", key]
    procs = [
        subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert len(set(outs)) == 1, outs
    job_id = outs[0]
    client.job(job_id).wait(timeout=60)

    # the same key, another input: refused, naming the key and the job holding it
    source.write_text("other\n")
    proc = run_cli(*argv[3:], env=env)
    assert proc.returncode == 2
    assert key in proc.stderr and job_id in proc.stderr and "input" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_delete_frees_the_key_and_status_says_deleted(fleet):
    client, config = fleet
    key = f"del-{uuid.uuid4().hex}"
    first = client.submit(texts(10), MODEL, idempotency_key=key)
    first.wait(timeout=60)
    with pytest.raises(UsageError, match="held by job"):
        client.submit(texts(11), MODEL, idempotency_key=key)
    first.delete()
    proc = run_cli("status", first.id, env={"EMBEDFLEET_MODEL_CONFIG": str(config)})
    assert proc.returncode == 2 and "deleted" in proc.stderr, proc.stderr
    second = client.submit(texts(11), MODEL, idempotency_key=key)
    assert second.id != first.id
    second.wait(timeout=60)
    second.delete()


def test_dataset_job_retried_after_success_writes_nothing_again(fleet, tmp_path):
    client, _ = fleet
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"text": f"r {i}"}) + "\n" for i in range(30)))
    out = str(tmp_path / "out") + "/"
    key = f"ds-{uuid.uuid4().hex}"
    job = client.submit_dataset(str(source), MODEL, out, chunk_rows=10, idempotency_key=key)
    job.wait(timeout=60)
    written = {p.name: p.stat().st_mtime_ns for p in Path(out).glob("part-*.parquet")}
    assert len(written) == 3
    again = client.submit_dataset(str(source), MODEL, out, chunk_rows=10, idempotency_key=key)
    assert again.id == job.id and again.status()["state"] == "SUCCESS"
    assert {p.name: p.stat().st_mtime_ns for p in Path(out).glob("part-*.parquet")} == written
    with pytest.raises(UsageError, match="output differ"):
        client.submit_dataset(
            str(source),
            MODEL,
            str(tmp_path / "elsewhere") + "/",
            chunk_rows=10,
            idempotency_key=key,
        )
    job.delete()
