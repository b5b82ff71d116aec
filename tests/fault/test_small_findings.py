"""Item 6 of issue 14: a wrong Redis password stops a worker with one line; ``result``
of a job with failed rows exits 1 unless ``--partial``; ``down`` warns before it stops
an embedded server holding queued chunks; chunk texts never show in ``celery inspect``;
old ``name@version`` copies are unloaded once their jobs end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from producers.server import free_port, start_server
from tasks.routing import queue_for
from tests.fault.conftest import HASH, SLOW, wait_for
from tests.plugins import HANG_ENV, POISON, SLOW_ENV, hash_vector
from tests.support import run_celery, run_cli, write_config

pytestmark = pytest.mark.fault

PASSWORD = "the-right-one"


def test_a_worker_with_a_wrong_password_exits_2_with_one_line(make_fleet):
    fleet = make_fleet({"hash-model": HASH}, password=PASSWORD)
    wrong = fleet.server.url.replace(PASSWORD, "not-the-password")
    env = {**fleet.env, "EMBEDFLEET_REDIS_URL": wrong, "EMBEDFLEET_MODEL_CONFIG": str(fleet.config)}
    proc = run_cli("worker", env=env, timeout=120)  # it returns: no retrying for ever
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "Redis refused this worker's credentials" in lines[0]
    assert "not-the-password" not in lines[0]  # the URL is shown masked
    # ... and without any password at all
    env["EMBEDFLEET_REDIS_URL"] = wrong.replace(":not-the-password@", "")
    proc = run_cli("worker", env=env, timeout=120)
    assert proc.returncode == 2 and "credentials" in proc.stderr, proc.stderr[-2000:]


def test_result_of_a_job_with_failed_rows_exits_1_unless_partial(make_fleet, tmp_path: Path):
    fleet = make_fleet({"hash-model": HASH})
    fleet.ready(fleet.worker())
    texts = [f"row {i}" for i in range(8)]
    texts[5] = f"row 5 {POISON}"
    job = fleet.client.submit(texts, model="hash-model", max_texts=2)
    wait_for(lambda: job.status()["state"] == "FAILURE", 60, "the job to fail")
    env = {"EMBEDFLEET_REDIS_URL": fleet.server.url}
    out = tmp_path / "out.npy"
    proc = run_cli("result", job.id, "--output", str(out), env=env, timeout=120)
    assert proc.returncode == 1 and "--partial" in proc.stderr, proc.stderr
    assert not out.exists()
    proc = run_cli("result", job.id, "--output", str(out), "--partial", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    (error,) = job.status()["errors"]
    failed_rows = set(job.record.chunk_rows(error["chunk"]).tolist())
    assert 5 in failed_rows
    for row, text in enumerate(texts):
        if row in failed_rows:
            assert np.isnan(vectors[row]).all()
        else:
            np.testing.assert_array_equal(vectors[row], hash_vector(text))


def test_down_warns_before_stopping_an_embedded_server_with_queued_chunks(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    server = start_server(free_port(), state / "server")
    try:
        (state / "server.pid").write_text(str(server.pid))
        client = server.client()
        client.lpush(queue_for("some-model"), b"a queued chunk", b"another")
        env = {"EMBEDFLEET_STATE_DIR": str(state), "EMBEDFLEET_REDIS_URL": server.url}
        proc = run_cli("down", env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "warning: stopping the embedded server while it holds 2 chunk(s)" in line
        assert "server" in proc.stdout
        # nothing queued, nothing said
        server = start_server(free_port(), state / "server2")
        (state / "server.pid").write_text(str(server.pid))
        env["EMBEDFLEET_REDIS_URL"] = server.url
        proc = run_cli("down", env=env, timeout=120)
        assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    finally:
        server.stop()


def test_inspect_active_shows_no_chunk_texts(make_fleet, tmp_path: Path):
    fleet = make_fleet({"slow": SLOW})
    hang = tmp_path / "frozen"
    worker = fleet.worker(**{HANG_ENV: str(hang)})
    fleet.ready(worker)
    secret = "Jane Doe, 12 Example Street, card 4111-1111-1111-1111"
    job = fleet.client.submit([secret, secret + " again"], model="slow")
    wait_for(hang.exists, 60, "the worker to start the chunk")
    proc = run_celery("inspect", "active", "--json", env={"EMBEDFLEET_REDIS_URL": fleet.server.url})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert job.id in proc.stdout and "<2 texts>" in proc.stdout, proc.stdout
    assert "Jane Doe" not in proc.stdout and "4111" not in proc.stdout
    # the same through the Python API, with or without safe=
    for safe in (False, True):
        inspect = fleet.client.app.control.inspect([worker.node], timeout=5, limit=1)
        active = inspect.active(safe=safe)
        assert "Jane Doe" not in json.dumps(active) and "<2 texts>" in json.dumps(active)
    assert "Jane Doe" not in worker.log()
    worker.kill()


def test_old_version_copies_are_unloaded_once_their_jobs_end(make_fleet):
    v1 = {"slow": {**SLOW, "version": "1"}}
    fleet = make_fleet(v1, env={SLOW_ENV: "0.2", "EMBEDFLEET_OLD_VERSION_IDLE_S": "2"})
    worker = fleet.worker()
    fleet.ready(worker)
    # Given a job pinned to version 1 that is still running when version 2 is reloaded
    texts = [f"pinned row {i}" for i in range(24)]
    job = fleet.client.submit(texts, model="slow", max_texts=2)
    wait_for(lambda: job.status()["done"] >= 1, 60, "the job to start")
    write_config(fleet.config, {"slow": {**SLOW, "version": "2"}})
    (row,) = fleet.client.reload(timeout=10)
    assert row["ok"] and row["changed"] == ["slow"], row
    # Then its remaining chunks ran on a copy of version 1, and the job is one version
    np.testing.assert_array_equal(job.wait(timeout=120), np.stack([hash_vector(t) for t in texts]))
    assert "event=model_loaded model=slow@1" in worker.log()

    # ... and once the job is over, that copy is unloaded (not left to memory pressure)
    def copy_unloaded() -> bool:
        (models,) = fleet.client.models(timeout=2, destination=[worker.node])
        rows = {m["name"]: m for m in models["models"]}
        return "slow@1" in rows and not rows["slow@1"]["loaded"]

    wait_for(copy_unloaded, 60, "the old version's copy to be unloaded")
    # (the cache drops the entry first, then closes the model and logs: the line follows)
    line = "event=model_unloaded model=slow@1"
    wait_for(lambda: line in worker.log(), 10, "the unload's log line")
