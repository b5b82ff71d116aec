"""Dataset chunk rows sized to the job and the fleet (tasks.io.plan.chunk_rows_for), the
fleet's published throughput (stats, concurrency), and the dry run's estimate from it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from producers import dry_run
from tasks.contract import catalog
from tasks.contract.options import EmbedOptions
from tasks.contract.spec import parse_model_config
from tasks.io.plan import (
    CHUNK_OVERHEAD_S,
    CHUNKS_PER_THREAD,
    DEFAULT_CHUNK_ROWS,
    MIN_CHUNK_ROWS,
    MIN_WORK_PER_OVERHEAD,
    chunk_rows_for,
)
from workers.observability.encode_cost import EncodeCosts


class _Hash:
    """The catalog's Redis hash over a dict (the calls catalog makes)."""

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


CONFIG = parse_model_config(
    {"m": {"type": "tests.plugins:HashModel", "model_path": "-", "RAM": 0.01}}
)


def test_small_jobs_get_several_chunks_per_live_thread():
    # 1,000 rows, 2 threads, a model of 20 ms a text: 4 chunks a thread
    assert chunk_rows_for(1000, 2, 0.02) == 125
    assert -(-1000 // chunk_rows_for(1000, 2, 0.02)) == 2 * CHUNKS_PER_THREAD
    # big jobs keep the default; no live worker counts as one thread
    assert chunk_rows_for(10_000_000, 2, 0.02) == DEFAULT_CHUNK_ROWS
    assert chunk_rows_for(1000, 0, 0.02) == 250


def test_no_chunk_holds_less_work_than_the_overhead_justifies():
    floor_s = MIN_WORK_PER_OVERHEAD * CHUNK_OVERHEAD_S
    # a model of 10 us a text: a chunk must hold 0.1 s of work, capped at the default
    assert chunk_rows_for(1000, 16, 1e-5) == DEFAULT_CHUNK_ROWS
    assert chunk_rows_for(1000, 16, floor_s / 50) == 50
    assert chunk_rows_for(1000, 16, None) == MIN_CHUNK_ROWS  # cost unknown


def test_workers_publish_tokens_dimension_and_threads():
    costs = EncodeCosts()
    costs.record("m", 10, 0.5, tokens=100, dimension=16)
    client = _Hash()
    catalog.publish(client, "w1", CONFIG, ["m"], costs.stats(), concurrency=3)
    catalog.publish(client, "w2", CONFIG, ["m"], concurrency=2)
    catalog.publish(client, "w3", CONFIG, [], concurrency=5)  # serves nothing
    served = catalog.read(client).models["m"]
    assert served.seconds_per_token == pytest.approx(0.005)
    assert served.dimension == 16
    assert catalog.live_threads(client, "m") == 5
    stale = json.loads(client.data["w2"])
    stale["heartbeat"] = time.time() - 2 * catalog.LIVE_S
    client.data["w2"] = json.dumps(stale).encode()
    assert catalog.live_threads(client, "m") == 3


class _Client:
    def __init__(self, redis: _Hash) -> None:
        self.redis = redis


def test_the_estimate_spreads_tokens_and_chunk_overhead_over_live_threads():
    client = _Hash()
    catalog.publish(client, "w1", CONFIG, ["m"], concurrency=2)
    texts = ["x" * 38] * 100  # 38 bytes: 10 tokens + 2 special = 12 each
    bounds = np.array([0, 25, 50, 75, 100])
    plan = dry_run.for_list(_Client(client), "m", "v1", texts, bounds)
    # Nobody measured m: no duration, and the plan says so
    assert plan.estimated_s is None and plan.output_bytes is None
    assert any("no worker has measured m" in n for n in plan.notes)
    assert (plan.rows, plan.chunks, plan.tokens, plan.bytes) == (100, 4, 1200, 3800)

    costs = EncodeCosts()
    costs.record("m", 10, 0.12, tokens=120, dimension=8)  # 1 ms a token
    assert catalog.heartbeat(client, "w1", costs.stats())
    plan = dry_run.for_list(_Client(client), "m", "v1", texts, bounds)
    assert plan.estimated_s == pytest.approx((1200 * 0.001 + 4 * CHUNK_OVERHEAD_S) / 2)
    assert plan.output_bytes == 100 * 8 * 4 and plan.threads == 2
    assert "duration ~" in plan.text() and json.loads(plan.dumps())["dry_run"] is True


def test_eta_follows_the_rate_kept_since_the_job_started():
    from producers.progress import eta_s

    assert eta_s(1000, 250, started=100.0, state="RUNNING", now=110.0) == 30.0
    assert eta_s(1000, 0, started=100.0, state="RUNNING", now=110.0) is None
    assert eta_s(1000, 1000, started=100.0, state="SUCCESS", now=110.0) is None


def test_windows_and_mean_estimate_every_window_s_tokens_and_windows_rows():
    client = _Hash()
    costs = EncodeCosts()
    costs.record("m", 10, 0.12, tokens=120, dimension=8)  # 1 ms a token
    catalog.publish(client, "w1", CONFIG, ["m"], costs.stats(), concurrency=1)
    # 4,000 bytes: ~1,000 word pieces; windows of L = 256 - 2 pieces every 254 - 32:
    # 1 + ceil((1000 - 254) / 222) = 5 windows, the pieces once plus 4 overlaps of 32,
    # plus [CLS] and [SEP] in each window. A short text is one window, as under truncate.
    texts = ["x" * 4000, "y" * 38]
    bounds = np.array([0, 1, 2])
    long_tokens, windows = 1000 + 4 * 32 + 5 * 2, 5
    truncate = dry_run.for_list(_Client(client), "m", "v1", texts, bounds)
    assert (truncate.tokens, truncate.output_rows) == (256 + 12, 2)
    for mode in ("windows", "mean"):
        plan = dry_run.for_list(
            _Client(client), "m", "v1", texts, bounds, EmbedOptions(long_text=mode)
        )
        assert plan.tokens == long_tokens + 12
        assert plan.estimated_s == pytest.approx((long_tokens + 12) * 0.001 + 2 * CHUNK_OVERHEAD_S)
        rows = windows + 1 if mode == "windows" else 2
        assert (plan.rows, plan.output_rows) == (2, rows)
        assert plan.output_bytes == rows * (8 * 4 + (8 if mode == "windows" else 0))
        assert any("no tokenizer" in n and "overlapping by 32" in n for n in plan.notes)
    assert (
        "(~6 output rows: one a window)"
        in dry_run.for_list(
            _Client(client), "m", "v1", texts, bounds, EmbedOptions(long_text="windows")
        ).text()
    )
    # another overlap: 1 + ceil(746 / 254) windows
    no_overlap = EmbedOptions(long_text="windows", window_overlap=0)
    plan = dry_run.for_list(_Client(client), "m", "v1", texts, bounds, no_overlap)
    assert plan.output_rows == 4 + 1 and plan.tokens == 1000 + 4 * 2 + 12
    # a model whose entry sets its window: L = 128 - 2, 1 + ceil((1000 - 126) / 126)
    entry = {"type": "tests.plugins:HashModel", "model_path": "-", "RAM": 0.01}
    narrow = parse_model_config({"m": {**entry, "max_seq_length": 128}})
    catalog.publish(client, "w1", narrow, ["m"], costs.stats(), concurrency=1)
    plan = dry_run.for_list(_Client(client), "m", "v1", texts, bounds, no_overlap)
    assert plan.output_rows == 8 + 1
    assert any("windows of 128 tokens" in n for n in plan.notes)


def test_the_window_estimate_follows_the_workers_window_rule():
    """The producer's estimate against the worker's own cutting
    (``workers.models.tokenizing.window_spans``) with a tokenizer whose word pieces are
    4 bytes, as the estimate assumes."""
    from tasks.contract.chunking import estimate_windows
    from workers.models.tokenizing import window_spans

    class FourBytePieces:
        def num_special_tokens_to_add(self, pair=False):
            return 2

        def __call__(self, texts, **_):
            if isinstance(texts, str):
                texts = [texts]
            spans = [[(i, min(i + 4, len(t))) for i in range(0, len(t), 4)] for t in texts]
            return {"offset_mapping": spans, "input_ids": spans}

    texts = ["a" * n for n in (0, 3, 1016, 1017, 1900, 4000, 10_001)]
    for window, overlap in ((256, 32), (128, 0), (512, 100)):
        spans = window_spans(FourBytePieces(), texts, "", window, overlap, "m")
        counts, tokens = estimate_windows(texts, window, overlap)
        assert counts.tolist() == [len(s) for s in spans]
        pieces = [sum(-(-(b - a) // 4) for a, b in s) for s in spans]
        assert tokens.tolist() == [p + 2 * len(s) for p, s in zip(pieces, spans, strict=True)]
