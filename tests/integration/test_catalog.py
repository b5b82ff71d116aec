"""Producers learn the fleet's models from what workers publish (tasks/contract/catalog.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tasks.contract import catalog
from tasks.contract.spec import spec_version
from tests.support import DEFAULT_MODEL, ROOT, WorkerProcess, write_config
from workers.config import load_model_config

pytestmark = pytest.mark.integration


def _cli_elsewhere(tmp_path, *args, env=None, url=None):
    """``embedfleet`` run from a folder with no models.json and no config env var."""
    full = {k: v for k, v in os.environ.items() if k != "EMBEDFLEET_MODEL_CONFIG"}
    full["PYTHONPATH"] = str(ROOT)
    if url:
        full["EMBEDFLEET_REDIS_URL"] = url
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=full,
    )


def test_worker_publishes_its_models_and_versions(worker, client, fleet_config):
    published = catalog.read(client.redis)
    config = load_model_config(str(fleet_config))
    (reply,) = [
        r for r in client.models(timeout=5, destination=[worker.node]) if r["worker"] == worker.node
    ]
    assert published.workers[worker.node] == reply["config_hash"]  # what it serves
    assert published.models[DEFAULT_MODEL].version == spec_version(config[DEFAULT_MODEL])


def test_submit_from_anywhere_needs_no_config_file(worker, tmp_path):
    # Given a producer in a folder with no models.json and no EMBEDFLEET_MODEL_CONFIG
    result = _cli_elsewhere(
        tmp_path,
        "submit",
        "--model",
        "hash-model",
        "--text",
        "a",
        "b",
        "--wait",
        "--output",
        str(tmp_path / "out.npy"),
    )
    # Then the fleet's publication is enough
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.npy").exists()
    unknown = _cli_elsewhere(tmp_path, "submit", "--model", "nope", "--text", "a")
    assert unknown.returncode == 2
    assert "unknown model 'nope'" in unknown.stderr and "hash-model" in unknown.stderr


def test_a_config_file_being_edited_badly_does_not_stop_submits(worker, tmp_path, fleet_config):
    # Given the producer's own copy of models.json is broken mid-edit
    broken = tmp_path / "models.json"
    broken.write_text('{"hash-model": {"type": ')
    result = _cli_elsewhere(
        tmp_path,
        "submit",
        "--model",
        "hash-model",
        "--text",
        "x",
        "--wait",
        env={"EMBEDFLEET_MODEL_CONFIG": str(broken)},
    )
    # Then submits still resolve from what the workers serve
    assert result.returncode == 0, result.stderr


def test_no_worker_ever_started_is_one_line(redis_server, tmp_path):
    # Given a Redis database no worker has ever published to
    url = os.environ["EMBEDFLEET_REDIS_URL"].rsplit("/", 1)[0] + "/7"
    result = _cli_elsewhere(tmp_path, "submit", "--model", DEFAULT_MODEL, "--text", "x", url=url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no worker has published" in lines[0]


def test_reload_publishes_the_new_config(client, tmp_path):
    # Given a worker of its own (the session worker's config stays untouched)
    entry = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}
    config = write_config(tmp_path / "models.json", {"hash-one": entry})
    proc = WorkerProcess(config).wait_ready(client.app)
    try:
        before = catalog.read(client.redis).workers[proc.node]
        # When its config gains a model and it reloads
        write_config(config, {"hash-one": entry, "hash-two": entry})
        rows = client.reload(destination=[proc.node], timeout=30)
        assert rows and rows[0]["ok"], rows
        # Then its publication carries the new hash and model
        after = catalog.read(client.redis)
        assert after.workers[proc.node] == rows[0]["config_hash"] != before
        assert "hash-two" in after.models
    finally:
        proc.stop()
    # and a clean stop removes it
    assert proc.node not in catalog.read(client.redis).workers


def test_a_killed_workers_stale_entry_yields_to_live_ones(redis_server, client):
    # Given a dead worker's publication naming a model no live worker serves
    config = load_model_config(os.environ["EMBEDFLEET_MODEL_CONFIG"])
    client.redis.hset(
        catalog.CATALOG_KEY,
        "dead@host",
        json.dumps(
            {
                **catalog.entry_for("dead@host", config, []),
                "heartbeat": 0.0,
                "models": {"ghost": {"version": "v", "type": "x"}},
            }
        ),
    )
    try:
        merged = catalog.read(client.redis)
        live = [w for w in merged.workers if w != "dead@host"]
        # Then it is used only when no worker is live
        assert ("ghost" in merged.models) == (not live)
    finally:
        catalog.forget(client.redis, "dead@host")


def test_models_and_reload_ask_the_live_workers_and_a_silent_one_has_no_row(worker, client):
    """``models`` and ``reload`` ask the workers the catalog lists as live and return once
    each answered (no fixed listen); one listed that never answers (killed a moment
    ago, its heartbeat still fresh) costs the timeout and has no row."""
    config = load_model_config(os.environ["EMBEDFLEET_MODEL_CONFIG"])
    ghost = "ghost@killed-a-moment-ago"
    client.redis.hset(catalog.CATALOG_KEY, ghost, json.dumps(catalog.entry_for(ghost, config, [])))
    try:
        assert {worker.node, ghost} <= set(catalog.live_workers(client.redis))
        rows = client.models(timeout=1.0)
        assert worker.node in [r["worker"] for r in rows]
        assert ghost not in [r["worker"] for r in rows]
        row = next(r for r in rows if r["worker"] == worker.node)
        assert any(m["name"] == DEFAULT_MODEL for m in row["models"])
        reloaded = client.reload(timeout=5.0)
        names = [r["worker"] for r in reloaded]
        assert worker.node in names and ghost not in names
    finally:
        catalog.forget(client.redis, ghost)
    # ... and with the catalog telling the truth, every live worker's row is there
    assert worker.node in [r["worker"] for r in client.models()]
