"""`embedfleet up` / `embedfleet down` with real processes: the embedded server and two
workers start, a job runs on them, and `down` leaves nothing running."""

from __future__ import annotations

import json
import stat
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


def pid_files(state: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in state.glob("*.pid")}


def test_up_twice_grows_and_down_up_keeps_queued_work(tmp_path: Path):
    # Given a fleet of one worker serving hash-a only (hash-b is configured, not served)
    hashed = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}
    config = write_config(tmp_path / "models.json", {"hash-a": hashed, "hash-b": hashed})
    state = tmp_path / "state"
    env = {
        "EMBEDFLEET_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "EMBEDFLEET_STATE_DIR": str(state),
        "EMBEDFLEET_MODEL_CONFIG": str(config),
    }
    family: list[psutil.Process] = []
    try:
        first = run_cli("up", "--workers", "1", "--models", "hash-a", env=env, timeout=240)
        assert first.returncode == 0, first.stderr
        before = pid_files(state)
        assert set(before) == {"server", "worker1"}
        family = list(recorded(state).values())
        key = state / "job.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

        # When `up` runs again: it says so, starts nothing, touches no pid file
        again = run_cli("up", "--workers", "1", "--models", "hash-a", env=env, timeout=240)
        assert again.returncode == 0, again.stderr
        assert "fleet already up" in again.stdout and "nothing started" in again.stdout
        assert pid_files(state) == before
        assert len(json.loads(run_cli("models", "--json", env=env).stdout)) == 1

        # When a job is submitted for a model no live worker serves: queued, with a warning
        texts = [f"kept across down and up {i}" for i in range(5)]
        submit = run_cli("submit", "--model", "hash-b", "--text", *texts, env=env)
        assert submit.returncode == 0, submit.stderr
        job = submit.stdout.strip()
        assert "no live worker serves hash-b" in submit.stderr and job in submit.stderr

        # Then `down` says where the queued chunk stays, and `up` brings it back
        down = run_cli("down", env=env, timeout=120)
        assert down.returncode == 0, down.stderr
        assert "stay in its append-only file" in down.stderr, down.stderr
        assert [p.pid for p in family if running(p)] == []
        up = run_cli("up", "--workers", "1", "--models", "hash-a", env=env, timeout=240)
        assert up.returncode == 0 and "started an embedded server" in up.stdout, up.stderr
        family = list(recorded(state).values())
        status = run_cli("status", job, "--json", env=env)
        assert json.loads(status.stdout)["state"] == "PENDING", status.stdout
        assert key.read_bytes() and stat.S_IMODE(key.stat().st_mode) == 0o600  # reused

        # When `up --workers 2` grows the fleet: one new worker, a new name, worker1 kept
        worker1 = pid_files(state)["worker1"]
        grow = run_cli("up", "--workers", "2", "--models", "hash-b", env=env, timeout=240)
        assert grow.returncode == 0, grow.stderr
        assert "2 worker(s)" in grow.stdout and "started: worker2" in grow.stdout, grow.stdout
        assert pid_files(state)["worker1"] == worker1 and "worker2" in pid_files(state)
        family = list(recorded(state).values())
        # Then the job queued before `down` runs, every row right
        out = tmp_path / "out.npy"
        result = run_cli("result", job, "--output", str(out), "--timeout", "120", env=env)
        assert result.returncode == 0, result.stderr
        np.testing.assert_array_equal(np.load(out), np.stack([hash_vector(t) for t in texts]))
        assert run_cli("down", env=env, timeout=120).returncode == 0
    finally:
        for proc in family:
            if running(proc):
                proc.kill()


def test_up_after_workers_were_killed_under_flower_restarts_them_in_one_go(tmp_path: Path):
    # Given `up --flower`, then its worker SIGKILLed (Flower still running)
    config = write_config(
        tmp_path / "models.json",
        {"hash-up": {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}},
    )
    state = tmp_path / "state"
    port = str(free_port())
    env = {
        "EMBEDFLEET_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "EMBEDFLEET_STATE_DIR": str(state),
        "EMBEDFLEET_MODEL_CONFIG": str(config),
        "FLOWER_BASIC_AUTH": "",
    }
    family: list[psutil.Process] = []
    try:
        first = run_cli("up", "--flower", "--flower-port", port, env=env, timeout=240)
        assert first.returncode == 0, first.stderr
        procs = recorded(state)
        family = list(procs.values())
        flower = pid_files(state)["flower"]
        procs["worker1"].kill()
        psutil.wait_procs([procs["worker1"]], timeout=30)
        # When `up --flower` runs again
        again = run_cli("up", "--flower", "--flower-port", port, env=env, timeout=240)
        # Then the worker is back, Flower is the same process, and nothing was printed
        # but one line
        assert again.returncode == 0, again.stderr
        assert "started: worker1" in again.stdout and "flower" in again.stdout
        assert "Traceback" not in again.stderr
        assert pid_files(state)["flower"] == flower
        family += list(recorded(state).values())
        down = run_cli("down", env=env, timeout=120)
        assert down.returncode == 0 and "flower" in down.stdout, down.stderr
        assert [p.pid for p in family if running(p)] == []
    finally:
        for proc in family:
            if running(proc):
                proc.kill()
