"""`embedfleet up` / `embedfleet down` with real processes: the embedded server and two
workers start, a job runs on them, and `down` leaves nothing running."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import free_port
from tests.plugins import hash_vector
from tests.support import run_cli, write_config

pytestmark = pytest.mark.integration

TEXTS = [f"up and down {i}" for i in range(7)]


def recorded(state: Path) -> dict[str, psutil.Process]:
    """The processes ``up`` recorded in its state folder, by name."""
    procs = {}
    for pidfile in state.glob("*.pid"):
        procs[pidfile.stem] = psutil.Process(int(pidfile.read_text().split()[0]))
    return procs


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_starts_server_and_workers_a_job_runs_and_down_stops_them(tmp_path: Path):
    # Given no server at a local address, and a config with one cheap model
    config = write_config(
        tmp_path / "models.json",
        {"hash-up": {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}},
    )
    state = tmp_path / "state"
    env = {
        "EMBEDFLEET_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "EMBEDFLEET_STATE_DIR": str(state),
        "EMBEDFLEET_MODEL_CONFIG": str(config),
    }
    family: list[psutil.Process] = []
    try:
        # When `up` starts the fleet
        up = run_cli("up", "--workers", "2", env=env, timeout=240)
        assert up.returncode == 0, up.stderr
        assert "started an embedded server" in up.stdout and "2 worker(s)" in up.stdout
        procs = recorded(state)
        assert set(procs) == {"server", "worker1", "worker2"}
        family = [p for proc in procs.values() for p in (proc, *proc.children(recursive=True))]
        assert all(running(p) for p in family)

        # Then a job submitted by another process runs on them
        submit = run_cli("submit", "--model", "hash-up", "--text", *TEXTS, "--wait", env=env)
        assert submit.returncode == 0, submit.stderr
        job = submit.stdout.strip()
        out = tmp_path / "out.npy"
        result = run_cli("result", job, "--output", str(out), env=env)
        assert result.returncode == 0, result.stderr
        np.testing.assert_array_equal(np.load(out), np.stack([hash_vector(t) for t in TEXTS]))
        # ... and `models --json` reports both workers in the contract's shape
        listing = run_cli("models", "--json", env=env)
        assert listing.returncode == 0, listing.stderr
        served = json.loads(listing.stdout)
        assert sorted(row["worker"].split("@")[0] for row in served) == ["worker1", "worker2"]
        entries = [m for row in served for m in row["models"]]
        assert {m["name"] for m in entries} == {"hash-up"}
        contract = {"name", "loaded", "ram_gb_config", "ram_gb_measured", "hits"}
        assert all(contract <= set(m) and m["ram_gb_config"] == 0.01 for m in entries)
        assert sum(m["hits"] for m in entries) >= 1 and any(m["loaded"] for m in entries)

        # When `down` stops it
        down = run_cli("down", env=env, timeout=120)
        assert down.returncode == 0, down.stderr
        assert down.stdout.startswith("stopped: ")
        assert set(down.stdout.split(":", 1)[1].strip().split(", ")) == {
            "server",
            "worker1",
            "worker2",
        }
        # Then nothing it started is left running, and no pid file is left behind
        assert [p.pid for p in family if running(p)] == []
        assert list(state.glob("*.pid")) == []
        # ... and a second `down` finds nothing to stop
        again = run_cli("down", env=env)
        assert again.returncode == 0 and "nothing was running" in again.stdout
    finally:
        for proc in family:  # a failed assertion must not leave processes behind
            if running(proc):
                proc.kill()


def test_down_never_signals_a_process_that_reused_a_recorded_pid(tmp_path: Path):
    # Given a pid file naming a live process (this test's) with another start time
    state = tmp_path / "state"
    state.mkdir()
    me = psutil.Process()
    (state / "worker1.pid").write_text(f"{me.pid} {me.create_time() - 1000.0!r}")
    # When `down` runs
    down = run_cli("down", env={"EMBEDFLEET_STATE_DIR": str(state)}, timeout=60)
    # Then it leaves that process alone and drops the stale pid file
    assert down.returncode == 0, down.stderr
    assert "nothing was running" in down.stdout
    assert running(me) and list(state.glob("*.pid")) == []
