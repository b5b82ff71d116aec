"""The gateway's reading of an embeddings body and its startup checks, without a fleet."""

from __future__ import annotations

import pytest

from gateway.auth import check_startup, is_loopback
from gateway.errors import APIError
from gateway.requests import embedding_request, parse_json
from tasks.contract.errors import ConfigError


def test_a_string_is_one_input_and_defaults_are_openai_s():
    asked = embedding_request({"model": "m", "input": "hi", "user": "u1"})
    assert asked.texts == ["hi"] and asked.encoding_format == "float"
    assert asked.dimensions is None


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        ({"input": "x"}, 400, "'model' is required"),
        ({"model": "m"}, 400, "'input' is required"),
        ({"model": "m", "input": [1, 2]}, 400, "token ids"),
        ({"model": "m", "input": [[1, 2]]}, 400, "token ids"),
        ({"model": "m", "input": ["x"] * 2049}, 400, "at most 2048"),
        ({"model": "m", "input": ["\ud800"]}, 400, "lone surrogate"),
        ({"model": "m", "input": "x", "dimensions": True}, 400, "positive integer"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, 400, "encoding_format"),
        ({"model": "bad/name", "input": "x"}, 404, "does not exist"),
    ],
)
def test_refusals_name_the_field(payload, status, says):
    with pytest.raises(APIError) as caught:
        embedding_request(payload)
    assert caught.value.status == status and says in caught.value.message


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b"\xff"])
def test_a_body_that_is_no_json_object_is_400(raw):
    with pytest.raises(APIError) as caught:
        parse_json(raw)
    assert caught.value.status == 400


def test_startup_needs_keys_or_no_auth_on_loopback():
    check_startup(("k",), False, "0.0.0.0")
    check_startup((), True, "127.0.0.1")
    check_startup((), True, "::1")
    for keys, no_auth, host in [
        ((), False, "127.0.0.1"),
        ((), True, "0.0.0.0"),
        (("k",), True, "::1"),
    ]:
        with pytest.raises(ConfigError):
            check_startup(keys, no_auth, host)
    assert is_loopback("localhost") and not is_loopback("example.com")


def test_without_a_tokenizer_usage_is_the_estimate(tmp_path):
    from gateway.usage import TokenCounter
    from tasks.contract.chunking import estimate_tokens

    texts = ["a text", "another one"]
    assert TokenCounter(None).count("m", texts) == int(estimate_tokens(texts).sum())
    config = tmp_path / "models.json"
    config.write_text('{"m": {"type": "tests.plugins:HashModel", "model_path": "x", "RAM": 0.01}}')
    assert TokenCounter(str(config)).count("m", texts) == int(estimate_tokens(texts).sum())
