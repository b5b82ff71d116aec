"""Configuration errors at worker start: each bad entry is named with its reason, the
valid entries keep serving. (Errors at reload are covered by the reload tests.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from producers.errors import JobFailedError, UnknownModelError
from producers.server import free_port
from tests.fault.conftest import HASH
from tests.plugins import hash_vector
from tests.support import run_cli

pytestmark = pytest.mark.fault

MODELS = {
    "good": HASH,
    "unknown-type": {"type": "no_such_type", "model_path": "x", "RAM": 0.1},
    "negative-ram": {**HASH, "RAM": -1},
    "missing-path": {"type": "onnx", "model_path": "/nonexistent/embedfleet/model", "RAM": 0.1},
    "unreachable-s3": {"type": "s3", "model_path": "s3://embedfleet-test/m.onnx", "RAM": 0.1},
}


def test_invalid_json_stops_the_worker_with_one_clear_line(tmp_path: Path):
    config = tmp_path / "models.json"
    config.write_text('{"good": {"type": "x",}}')
    proc = run_cli("worker", env={"EMBEDFLEET_MODEL_CONFIG": str(config)}, timeout=60)
    assert proc.returncode == 2
    assert f"{config}: invalid JSON at line 1 column" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_entries_are_named_and_good_ones_keep_serving(make_fleet, tmp_path: Path):
    # Given a worker started on a config with four bad entries and one good one; S3 is
    # a closed port, and no copy of the S3 model is cached
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "EMBEDFLEET_DOWNLOAD_DIR": str(tmp_path / "downloads"),
    }
    fleet = make_fleet(MODELS, env=env)
    worker = fleet.worker()
    fleet.ready(worker)
    # A producer with no config of its own: it learns the models from what the worker
    # publishes, refused entries and their reasons included.
    from producers import EmbeddingClient

    client = EmbeddingClient(redis_url=fleet.server.url)

    # Then the invalid entries are named, with their reason, in the worker's log and
    # in its inspect reply
    log = worker.log()
    assert "model 'unknown-type': field 'type'" in log and "unknown type 'no_such_type'" in log
    assert "model 'negative-ram': field 'RAM'" in log
    (reply,) = client.models(timeout=1)
    # (entries whose type or source does not resolve are set aside at start too)
    assert set(reply["config_errors"]) == {
        "unknown-type",
        "negative-ram",
        "missing-path",
        "unreachable-s3",
    }
    # ... a producer learning the models from the fleet refuses jobs for them at submit,
    # naming the worker's reason
    for model, reason in (
        ("negative-ram", "greater than 0"),
        ("unknown-type", "unknown type 'no_such_type'"),
        ("missing-path", "/nonexistent/embedfleet/model"),
        ("unreachable-s3", "s3://embedfleet-test/m.onnx"),
    ):
        with pytest.raises(UnknownModelError, match=f"'{model}'.*refused by the fleet"):
            client.submit(["text"], model=model)
        assert (
            reason
            in client.redis.hget(  # the reason the worker published
                "embedfleet:fleet:catalog", worker.node
            ).decode()
        )
    # ... and a producer with a config file of its own (which cannot check types or
    # sources) gets its chunks failed at once by the worker, saying why
    for model, reason in (
        ("unknown-type", "unknown type 'no_such_type'"),
        ("missing-path", "/nonexistent/embedfleet/model"),
        ("unreachable-s3", "s3://embedfleet-test/m.onnx"),
    ):
        job = fleet.client.submit(["text"], model=model)
        with pytest.raises(JobFailedError):
            job.wait(timeout=60)
        (error,) = job.status()["errors"]
        assert model in error["error"] and reason in error["error"], error
    # ... and the good entry serves, before and after
    texts = [f"text {i}" for i in range(10)]
    vectors = client.submit(texts, model="good").wait(timeout=30)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    assert worker.proc.poll() is None
