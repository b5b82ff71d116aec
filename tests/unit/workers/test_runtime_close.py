"""A runtime's background sweeper stops when the runtime closes."""

from __future__ import annotations

from tasks.contract.settings import Settings
from workers.config.loader import parse_model_config
from workers.serving.runtime import Runtime

HASH = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.25}


def test_close_stops_the_old_version_sweeper() -> None:
    # Given a runtime whose old-version sweeper runs (as after a reload that changed a model)
    config = parse_model_config({"hash": HASH})
    runtime = Runtime(config, Settings(embed_cache=False, old_version_idle_s=600), budget_gb=1.0)
    runtime._start_old_version_sweeper()
    sweeper = runtime._sweeper
    assert sweeper is not None and sweeper.is_alive()
    # When the runtime closes, Then the sweeper thread ends (it waited on 5 s pauses)
    runtime.close(timeout=30)
    assert not sweeper.is_alive()


def test_one_sweep_unloads_nothing_when_no_old_version_is_loaded() -> None:
    runtime = Runtime(
        parse_model_config({"hash": HASH}), Settings(embed_cache=False), budget_gb=1.0
    )
    assert runtime.sweep_old_versions_once(0.0) == []
