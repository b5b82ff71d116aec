"""The suite's rule for forking a worker from the preloaded server (tests/preloaded.py):
only where the worker would see what a fresh interpreter sees."""

from __future__ import annotations

import json
import os

from tests import preloaded
from tests.support import ROOT


def _env(**changes: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **changes}


def test_entry_point_variables_may_differ_and_import_time_ones_may_not(monkeypatch):
    monkeypatch.delenv(preloaded.FRESH_ENV, raising=False)
    assert preloaded.forkable(_env(), ROOT)
    assert preloaded.forkable(_env(EMBEDFLEET_THREADS="3", AWS_REGION="eu-west-1"), ROOT)
    # read when a library is imported: the server's copy would be stale
    assert not preloaded.forkable(_env(HF_HOME="/elsewhere"), ROOT)
    assert not preloaded.forkable(_env(OMP_NUM_THREADS="7"), ROOT)
    assert not preloaded.forkable(_env(PYTHONPATH=f"{ROOT}{os.pathsep}/plugins"), ROOT)
    assert not preloaded.forkable({k: v for k, v in _env().items() if k != "HOME"}, ROOT)
    # and TEST_FRESH_WORKERS=1 forks nothing
    monkeypatch.setenv(preloaded.FRESH_ENV, "1")
    assert not preloaded.forkable(_env(), ROOT)


def test_only_workers_serving_a_torch_model_are_forked(tmp_path):
    config = tmp_path / "models.json"
    hashed = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}
    torchy = {"type": "sentence_transformer", "model_path": "x", "RAM": 0.5}
    config.write_text(json.dumps({"hash": hashed, "mini": torchy}))
    assert preloaded.serves_torch(config, "all")
    assert preloaded.serves_torch(config, "hash,mini")
    assert not preloaded.serves_torch(config, "hash")
    assert not preloaded.serves_torch(tmp_path / "missing.json", "all")
