"""Chunk sizes follow what a text costs the model (tasks.contract.chunking.budget_for)."""

from __future__ import annotations

from tasks.contract.chunking import (
    DEFAULT_MAX_TEXTS,
    DEFAULT_MAX_TOKENS,
    MAX_CHEAP_TEXTS,
    TARGET_CHUNK_S,
    budget_for,
)
from workers.observability.encode_cost import EncodeCosts


def test_unknown_or_expensive_models_keep_the_defaults():
    assert budget_for(None) == (DEFAULT_MAX_TOKENS, DEFAULT_MAX_TEXTS)
    assert budget_for(0.0) == (DEFAULT_MAX_TOKENS, DEFAULT_MAX_TEXTS)
    assert budget_for(0.005) == (DEFAULT_MAX_TOKENS, DEFAULT_MAX_TEXTS)  # a transformer on CPU


def test_cheap_models_get_chunks_of_the_target_work():
    tokens, texts = budget_for(TARGET_CHUNK_S / 1000)
    assert texts == 1000
    assert tokens == DEFAULT_MAX_TOKENS * 1000 // DEFAULT_MAX_TEXTS


def test_a_cheap_models_job_keeps_several_chunks():
    from tasks.contract.chunking import MIN_CHUNKS

    assert budget_for(1e-6, job_texts=20_000)[1] == -(-20_000 // MIN_CHUNKS)
    assert budget_for(1e-6, job_texts=10)[1] == DEFAULT_MAX_TEXTS  # small jobs: the defaults
    assert budget_for(1e-6, job_texts=10**6)[1] == MAX_CHEAP_TEXTS


def test_the_cheapest_models_stop_at_the_wire_limit():
    from tasks.contract.wire import MAX_TEXTS_PER_CHUNK

    assert budget_for(1e-9)[1] == MAX_CHEAP_TEXTS <= MAX_TEXTS_PER_CHUNK


def test_encode_costs_average_recent_chunks_and_forget():
    costs = EncodeCosts()
    assert costs.seconds_per_text("m") is None
    costs.record("m", 100, 0.1)
    assert costs.seconds_per_text("m") == 0.001
    for _ in range(60):  # the model got 10x cheaper: the figure follows
        costs.record("m", 100, 0.01)
    assert abs(costs.seconds_per_text("m") - 0.0001) < 1e-6
    costs.record("m", 0, 1.0)  # nothing encoded: ignored
    assert set(costs.snapshot()) == {"m"}
    costs.forget("m")
    assert costs.snapshot() == {}


class _Hash:
    """The three hash commands tasks.contract.catalog uses, on a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def hset(self, _key, field, value):
        self.data[field] = value.encode()

    def hget(self, _key, field):
        return self.data.get(field)

    def eval(self, _script, _keys, _key, field, value):
        """The heartbeat's one script: HSET only over a field that is there."""
        if field not in self.data:
            return 0
        self.hset(_key, field, value)
        return 1

    def hgetall(self, _key):
        return {k.encode(): v for k, v in self.data.items()}


def test_workers_publish_costs_that_producers_read():
    from tasks.contract import catalog
    from tasks.contract.spec import parse_model_config

    config = parse_model_config(
        {"cheap": {"type": "tests.plugins:HashModel", "model_path": "-", "RAM": 0.01}}
    )
    client = _Hash()
    catalog.publish(client, "w1", config, ["cheap"])
    assert catalog.read(client).models["cheap"].seconds_per_text is None
    # When the worker's heartbeat carries what a text cost
    assert catalog.heartbeat(client, "w1", {"cheap": 2e-5, "not-served": 1.0})
    # Then producers see it, and only for models the worker publishes
    served = catalog.read(client)
    assert served.models["cheap"].seconds_per_text == 2e-5
    assert "not-served" not in served.models
    assert budget_for(served.models["cheap"].seconds_per_text)[1] == int(TARGET_CHUNK_S / 2e-5)
