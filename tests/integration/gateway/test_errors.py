"""Every refusal of the gateway reaches the SDK as its own exception class, with
OpenAI's error shape; hostile bodies get a 4xx and never reach a worker."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from tests.gateway_support import TEST_KEY
from tests.support import DEFAULT_MODEL

pytestmark = pytest.mark.integration


def _post(gateway, path: str, data: bytes, headers: dict[str, str] | None = None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{gateway.port}{path}",
        data=data,
        method="POST",
        headers={
            "Authorization": f"Bearer {TEST_KEY}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_wrong_or_missing_key_is_an_authentication_error(gateway):
    from openai import OpenAI

    for key in ("sk-wrong", TEST_KEY + "x"):
        wrong = OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.models.list()
        assert caught.value.code == "invalid_api_key"
    status, body = _post(gateway, "/v1/embeddings", b"{}", {"Authorization": ""})
    assert status == 401 and "API key" in body["error"]["message"]


def test_an_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.embeddings.create(model="no-such-model", input="x")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("no-such-model")


def test_token_arrays_are_refused_saying_so(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.embeddings.create(model=DEFAULT_MODEL, input=[[1, 2, 3]])
    assert "token ids" in caught.value.message and caught.value.param == "input"


def test_bad_fields_are_bad_requests(openai_client):
    cases = [
        {"input": "x", "encoding_format": "int8"},
        {"input": "x", "dimensions": 0},
        {"input": "x", "dimensions": 10_000},
        {"input": []},
        {"input": {"text": "x"}},
        {"input": ["x"] * 10_000},
    ]
    for extra in cases:
        with pytest.raises(openai.BadRequestError):
            openai_client.embeddings.create(model=DEFAULT_MODEL, **extra)


def test_hostile_bodies_get_a_4xx_each(gateway):
    big = json.dumps({"model": DEFAULT_MODEL, "input": "x" * (17 * 1024 * 1024)}).encode()
    cases = {
        "oversized": (big, 413),
        "malformed": (b'{"model": "all-MiniLM-L6-v2", "input": [', 400),
        "not an object": (b'["x"]', 400),
        "not utf-8": (b'{"model": "m", "input": "\xff\xfe"}', 400),
        "lone surrogate": (b'{"model": "all-MiniLM-L6-v2", "input": ["ok", "\\ud800"]}', 400),
        "10,000 inputs": (
            json.dumps({"model": DEFAULT_MODEL, "input": ["x"] * 10_000}).encode(),
            400,
        ),
        "empty": (b"", 400),
    }
    for name, (data, expected) in cases.items():
        status, body = _post(gateway, "/v1/embeddings", data)
        assert status == expected, (name, body)
        assert set(body["error"]) == {"message", "type", "param", "code"}, name


def test_an_oversized_body_is_an_api_status_error_413(openai_client):
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.embeddings.create(model=DEFAULT_MODEL, input=["y" * 100_000] * 200)
    assert caught.value.status_code == 413
