"""Fixtures for integration tests: a real server and a real worker process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import DEFAULT_MODEL, WorkerProcess, default_entry, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def fleet_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models.json of the integration tests: the real model, a plugin, a broken entry."""
    path = tmp_path_factory.mktemp("config") / "models.json"
    return write_config(
        path,
        {
            DEFAULT_MODEL: default_entry(),
            "hash-model": {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01},
            "broken-model": {
                "type": "sentence_transformer",
                "model_path": "/nonexistent/model-folder",
                "RAM": 0.1,
            },
        },
    )


@pytest.fixture(scope="session")
def client(redis_server, fleet_config, monkeypatch_session):
    from producers import EmbeddingClient

    monkeypatch_session.setenv("EMBEDFLEET_MODEL_CONFIG", str(fleet_config))
    return EmbeddingClient()


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def worker(client, fleet_config):
    """One real worker serving every model of ``fleet_config``."""
    proc = WorkerProcess(fleet_config).wait_ready(client.app)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def reference_model():
    """The same weights in-process, as a user would call them."""
    from sentence_transformers import SentenceTransformer

    from workers.sources.packaged import packaged_model_dir

    return SentenceTransformer(
        str(packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")), device="cpu"
    )


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)
