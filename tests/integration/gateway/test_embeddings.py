"""The official OpenAI SDK against a real gateway, server and worker: embeddings and
models give what ``client.embed`` gives, in OpenAI's shapes."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.support import DEFAULT_MODEL

pytestmark = pytest.mark.integration

TEXTS = ["the cat sat on the mat", "a quick brown fox", "embeddings of short texts"]


def test_a_list_as_floats_equals_client_embed(openai_client, client):
    answer = openai_client.embeddings.create(
        model=DEFAULT_MODEL, input=TEXTS, encoding_format="float"
    )
    got = np.asarray([d.embedding for d in answer.data], dtype=np.float32)
    expected = client.embed(TEXTS, model=DEFAULT_MODEL)
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert answer.model == DEFAULT_MODEL and answer.object == "list"
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(TEXTS)


def test_the_sdk_default_base64_is_little_endian_float32(openai_client, client):
    # The SDK asks for base64 by default and decodes it itself into floats.
    answer = openai_client.embeddings.create(model=DEFAULT_MODEL, input=TEXTS[0])
    expected = client.embed(TEXTS[:1], model=DEFAULT_MODEL)[0]
    assert len(answer.data) == 1
    np.testing.assert_allclose(np.asarray(answer.data[0].embedding), expected, atol=1e-6)
    # And the raw bytes on the wire are the float32 vector.
    raw = openai_client.embeddings.with_raw_response.create(
        model=DEFAULT_MODEL, input=[TEXTS[0]], encoding_format="base64"
    )
    wire = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(wire, str)
    np.testing.assert_array_equal(
        np.frombuffer(base64.b64decode(wire), dtype="<f4"), expected.astype("<f4")
    )


def test_dimensions_are_the_first_n_renormalized(openai_client, client):
    answer = openai_client.embeddings.create(
        model=DEFAULT_MODEL, input=TEXTS, dimensions=64, encoding_format="float"
    )
    got = np.asarray([d.embedding for d in answer.data], dtype=np.float32)
    full = client.embed(TEXTS, model=DEFAULT_MODEL)[:, :64]
    expected = full / np.linalg.norm(full, axis=1, keepdims=True)
    assert got.shape == (3, 64)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_models_lists_the_fleet_catalog(openai_client):
    listed = {m.id: m for m in openai_client.models.list()}
    assert DEFAULT_MODEL in listed and "hash-model" in listed
    assert "broken-model" not in listed  # refused by the workers: not served
    one = openai_client.models.retrieve(DEFAULT_MODEL)
    assert one.id == DEFAULT_MODEL and one.object == "model" and one.created > 0


def test_usage_counts_the_model_s_own_tokens(openai_client):
    from transformers import AutoTokenizer

    from tasks.contract.packaged import packaged_model_dir

    texts = ["short", "a somewhat longer text, with punctuation!", "word " * 1000]
    answer = openai_client.embeddings.create(model=DEFAULT_MODEL, input=texts)
    reference = AutoTokenizer.from_pretrained(
        str(packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2"))
    )
    ids = reference(texts, truncation=True, max_length=256)["input_ids"]
    assert len(ids[2]) == 256  # the long text counts what the model sees
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == sum(map(len, ids))
