"""The seed's entry points, ``workers.cache.load_embedding_model`` / ``free_memory``,
on this process's runtime: a model handed out is leased, and ``free_memory`` cannot
evict it until the caller closes it."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from tasks.contract.settings import Settings
from tests.plugins import hash_vector
from workers.cache import LeasedModel, free_memory, load_embedding_model
from workers.config.loader import parse_model_config
from workers.errors import NoRoomError
from workers.models.base import generate_embeddings
from workers.serving.process import get_runtime, set_runtime
from workers.serving.runtime import Runtime

TEXTS = ["leased", "until closed"]
HASH = {"type": "tests.plugins:HashModel", "model_path": "none"}


@pytest.fixture
def runtime():
    # Given this process's runtime: a 1 GB budget, two 0.6 GB models
    config = parse_model_config({"seed-a": {**HASH, "RAM": 0.6}, "seed-b": {**HASH, "RAM": 0.6}})
    runtime = Runtime(config, Settings(embed_cache=False), budget_gb=1.0)
    set_runtime(runtime)
    yield runtime
    set_runtime(None)


def test_a_leased_model_encodes_and_free_memory_cannot_evict_it(runtime):
    # When a caller loads a model through the seed's entry point
    model = load_embedding_model("seed-a")
    assert isinstance(model, LeasedModel) and model.held
    assert get_runtime() is runtime and runtime.cache.loaded() == ["seed-a"]
    np.testing.assert_array_equal(
        generate_embeddings(model, TEXTS), np.stack([hash_vector(t) for t in TEXTS])
    )
    # Then free_memory cannot take it from under the caller, however much is asked
    assert free_memory(1.0) == []
    assert runtime.cache.loaded() == ["seed-a"]
    assert model.encode(TEXTS).shape == (2, 16)  # still usable
    # When the caller closes it, free_memory can
    model.close()
    assert not model.held
    assert free_memory(1.0) == ["seed-a"]
    assert runtime.cache.loaded() == []


def test_the_lease_ends_with_the_with_block_and_when_the_object_is_collected(runtime):
    with load_embedding_model("seed-a") as model:
        assert free_memory(1.0) == []
    assert not model.held and free_memory(1.0) == ["seed-a"]

    model = load_embedding_model("seed-b")
    assert free_memory(1.0) == []
    del model
    gc.collect()
    assert free_memory(1.0) == ["seed-b"]


def test_a_held_model_is_never_evicted_to_make_room_for_another(runtime):
    # Given seed-a held: seed-b (0.6 GB) does not fit next to it in 1 GB
    held = load_embedding_model("seed-a")
    try:
        with pytest.raises(NoRoomError, match=r"'seed-b' needs 0.60 GB.*in use \(seed-a\)"):
            load_embedding_model("seed-b")
        assert runtime.cache.loaded() == ["seed-a"] and held.held
    finally:
        held.close()
    # Once released, loading seed-b evicts it
    with load_embedding_model("seed-b"):
        assert runtime.cache.loaded() == ["seed-b"]
