"""Item 3 of issue 14: a reload that cannot serve is refused (``ok: false`` with the
reason) and the old config keeps serving, exactly as at start; a worker started on the
same files refuses them too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fault.conftest import HASH
from tests.plugins import hash_vector
from tests.support import run_cli, write_config

pytestmark = pytest.mark.fault

GOOD = {"served": HASH}
MISSING_PATH = {"type": "onnx", "model_path": "/nonexistent/embedfleet/model.onnx", "RAM": 0.1}
NO_MODULE = {"type": "nosuch.module:Cls", "model_path": "none", "RAM": 0.1}
NOT_A_MODEL = {"type": "tests.plugins:hash_vector", "model_path": "none", "RAM": 0.1}
#: (what the reload tries, a piece of the reason every worker must give)
BAD_RELOADS = {
    "missing path": ({"served": MISSING_PATH}, "/nonexistent/embedfleet/model.onnx' does not"),
    "empty config": ({}, "holds no model"),
    "type does not import": ({**GOOD, "other": NO_MODULE}, "cannot import nosuch.module:Cls"),
    "type not a model": ({**GOOD, "other": NOT_A_MODEL}, "is not a BaseEmbeddingModel"),
}


@pytest.fixture(scope="module")
def fleet(make_module_fleet):
    fleet = make_module_fleet(GOOD)
    fleet.ready(fleet.worker())
    return fleet


def serves(fleet) -> None:
    texts = [f"after a bad reload {i}" for i in range(5)]
    vectors = fleet.client.submit(texts, model="served", max_texts=2).wait(timeout=30)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))


@pytest.mark.parametrize("case", list(BAD_RELOADS))
def test_a_reload_that_cannot_serve_is_refused_and_the_old_config_serves(fleet, case):
    (worker,) = fleet.workers
    config, reason = BAD_RELOADS[case]
    env = {"EMBEDFLEET_REDIS_URL": fleet.server.url}
    before = fleet.client.models(timeout=2, destination=[worker.node])[0]["config_hash"]
    write_config(fleet.config, config)
    try:
        proc = run_cli("reload", "--json", f"--worker={worker.node}", env=env, timeout=60)
    finally:
        write_config(fleet.config, GOOD)
    (row,) = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert row["ok"] is False and reason in row["error"], row
    assert row["config_hash"] == before
    (models,) = fleet.client.models(timeout=2, destination=[worker.node])
    assert models["config_hash"] == before
    assert [m["name"] for m in models["models"]] == ["served"]
    serves(fleet)  # the old model still serves a job


def test_an_empty_config_applies_when_asked_for(make_fleet):
    fleet = make_fleet(GOOD)
    (worker,) = [fleet.worker()]
    fleet.ready(worker)
    env = {"EMBEDFLEET_REDIS_URL": fleet.server.url}
    write_config(fleet.config, {})
    proc = run_cli("reload", "--json", "--allow-empty", env=env, timeout=60)
    (row,) = json.loads(proc.stdout)
    assert (proc.returncode, row["ok"], row["removed"]) == (0, True, ["served"]), row


@pytest.mark.parametrize("case", ["missing path", "type does not import", "type not a model"])
def test_a_worker_started_on_the_same_files_refuses_them(make_fleet, case):
    (spec,) = [s for s in BAD_RELOADS[case][0].values() if s is not HASH]
    reason = BAD_RELOADS[case][1]
    # alone, the bad entry leaves nothing to serve: one line, exit 2
    fleet = make_fleet({"other": spec})
    env = {**fleet.env, "EMBEDFLEET_MODEL_CONFIG": str(fleet.config)}
    proc = run_cli("worker", env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert reason in proc.stderr and "Traceback" not in proc.stderr
    # beside a good entry, it is set aside with its reason and the good one serves
    write_config(fleet.config, {**GOOD, "other": spec})
    worker = fleet.worker()
    fleet.ready(worker)
    (models,) = fleet.client.models(timeout=2, destination=[worker.node])
    assert reason in models["config_errors"]["other"]
    assert [m["name"] for m in models["models"]] == ["served"]
    serves(fleet)


def test_an_empty_config_at_start_is_one_line_and_exit_2(tmp_path: Path):
    config = write_config(tmp_path / "models.json", {})
    proc = run_cli("worker", env={"EMBEDFLEET_MODEL_CONFIG": str(config)}, timeout=60)
    assert proc.returncode == 2
    assert "no valid model to serve" in proc.stderr and "Traceback" not in proc.stderr
