"""A worker's compute threads: torch is imported only by a model that needs it, and then
computes on the threads the worker's boot chose (``workers.serving.threads``)."""

from __future__ import annotations

import uuid

import pytest

from tests.plugins import PROBE
from tests.support import WorkerProcess, write_config

pytestmark = pytest.mark.integration


def test_torch_comes_with_the_first_torch_model_on_the_boot_s_threads(redis_server, tmp_path):
    from producers import EmbeddingClient

    # Given a worker set to 3 threads (its environment says 1 to torch) serving a plugin
    # model that never imports torch and one of a type that uses torch, not yet loaded
    probe, torchy = f"probe-{uuid.uuid4().hex[:8]}", f"torch-{uuid.uuid4().hex[:8]}"
    entry = {"model_path": "none", "RAM": 0.01}
    config = write_config(
        tmp_path / "models.json",
        {
            probe: {"type": "tests.plugins:ProcessProbeModel", **entry},
            torchy: {"type": "tests.plugins:TorchProbeModel", **entry},
        },
    )
    client = EmbeddingClient(redis_url=redis_server.url, config_source=str(config))
    env = {"EMBEDFLEET_THREADS": "3", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    worker = WorkerProcess(config, env=env, log_dir=tmp_path).wait_ready(client.app)
    try:
        # When the plugin model serves a job, then the worker has not imported torch
        assert tuple(client.embed([f"{PROBE} 1"], model=probe, timeout=120)[0, :2]) == (0, 0)
        # When the torch model serves one, then torch computes on the boot's 3 threads
        assert tuple(client.embed([f"{PROBE} 2"], model=torchy, timeout=120)[0, :2]) == (1, 3)
        assert tuple(client.embed([f"{PROBE} 3"], model=probe, timeout=120)[0, :2]) == (1, 3)
    finally:
        worker.stop()
