"""The ``sagemaker`` wrapper against a loopback server speaking the runtime protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.aws import Endpoint, SageMakerServer
from tests.plugins import hash_vector
from workers.config.loader import parse_model_config
from workers.errors import EndpointBusyError, EndpointError, TransientError
from workers.models.pooling import mean_pooling
from workers.models.registry import build_model
from workers.models.sagemaker import parse_embeddings, request_body, split_batches


def hash_encode(texts: list[str]) -> np.ndarray:
    return np.stack([hash_vector(t) for t in texts])


@pytest.fixture
def server(monkeypatch):
    endpoints = {
        "hash": Endpoint(encode=hash_encode),
        "tokens": Endpoint(encode=hash_encode, tokens=True),
        "throttled": Endpoint(encode=hash_encode, throttle=2),
        "always-busy": Endpoint(encode=hash_encode, throttle=100),
        "broken": Endpoint(error=(424, "ModelError", "Received server error (500) from model")),
    }
    srv = SageMakerServer(endpoints).start()
    for key, value in srv.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    yield srv
    srv.stop()


def build(endpoint: str, **fields):
    config = parse_model_config(
        {"sm": {"type": "sagemaker", "model_path": endpoint, "RAM": 0.01, **fields}}
    )
    return build_model("sm", config["sm"])


def test_region_field_is_honoured(server):
    assert build("hash", region="eu-west-1").client.meta.region_name == "eu-west-1"


def test_vectors_come_back_in_order_split_by_batch_size(server):
    texts = [f"text {i}" for i in range(10)]
    vectors = build("hash", batch_size=4).encode(texts)
    np.testing.assert_array_equal(vectors, hash_encode(texts))
    assert server.endpoints["hash"].requests == [4, 4, 2]


def test_requests_stay_under_the_payload_limit(server):
    model = build("hash", batch_size=100)
    model.max_payload_bytes = 1000
    texts = [f"{i:03d} " + "y" * 200 for i in range(12)]
    np.testing.assert_array_equal(model.encode(texts), hash_encode(texts))
    assert max(server.endpoints["hash"].bodies) <= 1000
    # ~210 bytes a text: four fit in 1000 bytes, a fifth would not
    assert server.endpoints["hash"].requests == [4, 4, 4]


def test_token_vectors_are_pooled_and_normalize_is_honoured(server):
    vectors = build("tokens", normalize=True).encode(["a", "b"])
    expected = hash_encode(["a", "b"])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)


def test_throttling_is_retried_by_botocore_adaptive_mode(server, caplog):
    model = build("throttled")
    assert model.client.meta.config.retries["mode"] == "adaptive"
    with caplog.at_level("WARNING", logger="workers.models.sagemaker"):
        vectors = model.encode(["a"])
    np.testing.assert_array_equal(vectors, hash_encode(["a"]))
    assert server.endpoints["throttled"].requests == [1, 1, 1]  # two 429s, then served
    retries = [r.getMessage() for r in caplog.records if "event=endpoint_retry" in r.getMessage()]
    assert [line.split("attempt=")[1] for line in retries] == ["2", "3"]


def test_persistent_throttling_is_transient_and_names_the_endpoint(server):
    with pytest.raises(
        EndpointBusyError, match=r"'always-busy'.*429 ThrottlingException.*4 attempts"
    ) as info:
        build("always-busy").encode(["a"])
    assert isinstance(info.value, TransientError)  # the chunk task retries it later
    assert len(server.endpoints["always-busy"].requests) == 4


def test_other_refusals_fail_at_once_with_endpoint_status_and_message(server):
    with pytest.raises(
        EndpointError, match=r"'broken': HTTP 424 ModelError: Received server error"
    ):
        build("broken").encode(["a"])
    assert len(server.endpoints["broken"].requests) == 1
    with pytest.raises(
        EndpointError, match=r"'nowhere': HTTP 400 ValidationError: Endpoint nowhere"
    ):
        build("nowhere").encode(["a"])


def test_split_batches_keeps_order_and_limits():
    texts = ["a" * 10, "b" * 10, "c" * 10, "d"]
    limit = len(request_body(texts[:2]))
    batches = split_batches(texts, max_texts=3, max_bytes=limit)
    assert [t for b in batches for t in b] == texts
    assert all(len(request_body(b)) <= limit and len(b) <= 3 for b in batches)
    assert split_batches([], 4, 100) == []
    with pytest.raises(EndpointError, match="text 1 is .* over the endpoint payload limit"):
        split_batches(["ok", "z" * 500], 4, 100)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html>", "not JSON"),
        (json.dumps({"vectors": [[1.0]]}).encode(), "no 'embeddings'"),
        (json.dumps([[1.0, 2.0]]).encode(), "expected 2 vectors, got 1"),
        (json.dumps([["x"], ["y"]]).encode(), "not a numeric matrix"),
    ],
)
def test_unexpected_responses_are_named(body, needle):
    with pytest.raises(EndpointError, match=needle):
        parse_embeddings(body, 2, mean_pooling, "ep")
