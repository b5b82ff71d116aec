"""Fixtures of the fault suite: each test gets its own Redis server (started by
``producers.server``, like the embedded default) and its own real ``embedfleet
worker`` processes, so kills, restarts and short visibility timeouts never touch the
session's server or the integration tests' worker.

Workers get ``EMBEDFLEET_VISIBILITY_TIMEOUT_S`` in their environment: the visibility
timeout only matters where kombu restores unacked messages, which is inside workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import WorkerProcess, kill_all, write_config
from tests.waiting import wait_for  # noqa: F401  (the fault tests import it from here)

#: Visibility timeout of the fault suite's workers (the default is 3600 s).
VISIBILITY_S = 5
#: Heartbeat lapse of the fleets whose tests wait for a dead or paused worker's chunks to
#: come back (``EMBEDFLEET_WORKER_LAPSE_S``; the default is 30 s). What those tests check
#: is the same at any lapse; 6 s is still 6 missed beats of 1 s for a live worker (each
#: test waits it out once per death: 4 tests, 5 deaths).
LAPSE_S = 6
#: The cheap plugin models of the suite.
HASH = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}
SLOW = {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.01}
KILLER = {"type": "tests.plugins:KillerHashModel", "model_path": "none", "RAM": 0.01}


@dataclass
class Fleet:
    """A private server, a client of it and the workers started on it."""

    server: Any
    port: int
    data_dir: Path
    client: Any
    config: Path
    log_dir: Path
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(self, concurrency: int = 1, **env: str) -> WorkerProcess:
        """Start one more real worker on this fleet's server (not waiting for it)."""
        proc = WorkerProcess(
            self.config,
            concurrency=concurrency,
            env={**self.env, **env},
            log_dir=self.log_dir,
        )
        self.workers.append(proc)
        return proc

    def ready(self, *procs: WorkerProcess) -> None:
        """Wait until each worker answers a ping."""
        for proc in procs:
            proc.wait_ready(self.client.app)

    def redis(self) -> Any:
        """A redis-py client of the fleet's server."""
        return self.server.client()

    def close(self) -> None:
        """The test is over: its workers are killed (no test checks a shutdown here, and
        a warm one waits up to 10 s for a chunk still running), then the server stops."""
        kill_all(self.workers)
        self.server.stop()


@contextmanager
def fleet_factory(base: Path) -> Iterator[Callable[..., Fleet]]:
    """``make(models, env=..., visibility_s=..., lapse_s=..., **server_options)`` -> a new
    :class:`Fleet` under ``base``; every fleet made is closed (workers stopped, server
    stopped) on exit."""
    from producers import EmbeddingClient
    from producers.server import free_port, start_server
    from tasks.contract.settings import load_settings

    fleets: list[Fleet] = []

    def make(
        models: dict[str, Any],
        env: dict[str, str] | None = None,
        visibility_s: int | None = VISIBILITY_S,
        lapse_s: float | None = None,
        **server_options: Any,
    ) -> Fleet:
        n = len(fleets)
        port, data_dir = free_port(), base / f"server{n}"
        server = start_server(port, data_dir, **server_options)
        config = write_config(base / f"models{n}.json", models)
        fleet_env = {"EMBEDFLEET_REDIS_URL": server.url, **(env or {})}
        if visibility_s is not None:
            fleet_env["EMBEDFLEET_VISIBILITY_TIMEOUT_S"] = str(visibility_s)
        if lapse_s is not None:
            fleet_env["EMBEDFLEET_WORKER_LAPSE_S"] = str(lapse_s)
        # the producer reads the settings its fleet's workers get (TLS, lapse, ...), now
        settings = load_settings({**os.environ, **fleet_env})
        client = EmbeddingClient(redis_url=server.url, config_source=str(config), settings=settings)
        fleet = Fleet(server, port, data_dir, client, config, base / f"logs{n}", fleet_env)
        fleets.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.close()


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """A private server + client + config (+ workers) for one test."""
    with fleet_factory(tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Fleet]]:
    """Like ``make_fleet``, shared by the tests of one module."""
    with fleet_factory(tmp_path_factory.mktemp("fleet")) as make:
        yield make


def delivery_counts(redis_client: Any, job_id: str) -> dict[int, int]:
    """Chunk index -> deliveries counted by the chunk task (first attempt), for a job
    whose chunks all ran: a finished chunk's counter goes, and one delivered more than
    once leaves its count in the job's ``redelivered`` hash; the others ran once."""
    from tasks.jobs.deliveries import DELIVERIES_PREFIX

    total = int(redis_client.hget(f"embedfleet:job:{job_id}", "total") or 0)
    counts = dict.fromkeys(range(total), 1)
    for name, value in redis_client.hgetall(f"embedfleet:job:{job_id}:redelivered").items():
        if b":" not in name:
            counts[int(name)] = int(value)
    for key in redis_client.scan_iter(f"{DELIVERIES_PREFIX}{job_id}.*"):  # still running
        task_id, _, attempt = key.decode().removeprefix(DELIVERIES_PREFIX).rpartition(":")
        if attempt == "0":
            counts[int(task_id.rpartition(".")[2])] = int(redis_client.get(key))
    return counts


def pythonpath(*extra: Path) -> str:
    """PYTHONPATH of a worker: the repository plus ``extra`` folders."""
    from tests.support import ROOT

    return os.pathsep.join([str(ROOT), *map(str, extra)])
