"""A real worker with three real models (the packaged all-MiniLM-L6-v2 weights under
three names) and a memory budget that fits two: jobs cycle through all three."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from producers import EmbeddingClient
from tests.plugins import SLOW_ENV
from tests.support import WorkerProcess, default_entry, run_cli, write_config

pytestmark = pytest.mark.integration

MODELS = ("mem-a", "mem-b", "mem-c")
RAM_GB = 0.25  # per model, as configured
BUDGET_GB = 0.6  # two models fit (0.5), three do not (0.75)
TEXTS = [
    "A worker keeps its models inside a memory budget.",
    "Eviction unloads the least recently used model first.",
    "Memory must really go back to the operating system after an unload.",
]
_PAIR = re.compile(r"(\w+)=('[^']*'|\S+)")


@pytest.fixture(scope="module")
def memory_fleet(redis_server, tmp_path_factory):
    entries = {
        # fp32: the figures below are checked against the fp32 weights (~0.085 GB)
        name: default_entry(
            RAM=RAM_GB, preload=False, version=name, max_seq_length=128 + i, precision="fp32"
        )
        for i, name in enumerate(MODELS)
    }
    entries["mem-huge"] = default_entry(RAM=4.0, preload=False)
    config = write_config(tmp_path_factory.mktemp("memory") / "models.json", entries)
    client = EmbeddingClient(config_source=str(config))
    env = {
        "EMBEDFLEET_MEMORY_LIMIT_GB": str(BUDGET_GB),
        "EMBEDFLEET_EVICTION_POLICY": "lru",
        "EMBEDFLEET_WATCHDOG_INTERVAL_S": "0.5",
    }
    worker = WorkerProcess(config, env=env).wait_ready(client.app)
    yield client, worker, config
    worker.stop()


def _events(log: str, event: str) -> list[dict[str, str]]:
    rows = []
    for line in log.splitlines():
        if f"event={event} " in line:
            rows.append({k: v.strip("'") for k, v in _PAIR.findall(line)})
    return rows


def _my_row(client: EmbeddingClient, worker: WorkerProcess) -> dict:
    rows = client.models(destination=[worker.node])  # answers at once, not after 3 s
    assert [r["worker"] for r in rows] == [worker.node], rows
    return rows[0]


def test_jobs_cycling_through_three_models_all_succeed_with_two_loaded_at_most(memory_fleet):
    client, worker, _ = memory_fleet
    vectors = {}
    for _ in range(2):
        for name in MODELS:
            got = client.submit(TEXTS, model=name).wait(timeout=180)
            vectors.setdefault(name, got)
            loaded = [m["name"] for m in _my_row(client, worker)["models"] if m["loaded"]]
            assert name in loaded and len(loaded) <= 2, loaded
    # the same weights under three names give the same vectors
    for name in MODELS:
        assert vectors[name].shape == (len(TEXTS), 384)
        np.testing.assert_allclose(vectors[name], vectors["mem-a"], atol=1e-5)

    log = worker.log()
    loads = _events(log, "model_loaded")
    evictions = _events(log, "model_evicted")
    # LRU over a, b, c, a, b, c with room for two: every job loads, from the third on evicts
    assert len(loads) == 6 and len(evictions) == 4
    assert max(int(e["models_loaded"]) for e in loads) <= 2
    for e in evictions:
        assert e["reason"].startswith("make room for ")
        assert float(e["used_gb_after"]) <= BUDGET_GB - RAM_GB + 1e-6
    assert [e["model"] for e in evictions] == ["mem-a", "mem-b", "mem-c", "mem-a"]


def test_rss_falls_by_at_least_half_of_what_the_load_took_after_an_unload(memory_fleet):
    client, worker, _ = memory_fleet
    for name in MODELS:  # the first test may have been deselected: make evictions happen
        client.submit(TEXTS[:1], model=name).wait(timeout=180)
    log = worker.log()
    assert _events(log, "model_evicted")
    grew: dict[str, float] = {}  # model -> RSS growth over its latest load
    for line in log.splitlines():
        for row in _events(line, "model_loaded"):
            grew[row["model"]] = float(row["rss_gb_after"]) - float(row["rss_gb_before"])
        for e in _events(line, "model_evicted"):
            # the model's tensors, measured directly: ~0.085 GB of fp32 weights, never 0
            assert 0.06 < float(e["ram_gb_measured"]) < 0.11, e
            # the RSS its load took comes back when it goes
            freed = float(e["rss_gb_before"]) - float(e["rss_gb_after"])
            assert freed >= grew[e["model"]] / 2, (e, grew)
    assert "event=model_still_referenced" not in worker.log()


def test_models_json_shows_measured_ram_hits_and_last_use_per_worker(memory_fleet):
    client, worker, config = memory_fleet
    client.submit(TEXTS[:1], model="mem-a").wait(timeout=180)
    result = run_cli(
        "models", "--json", "--worker", worker.node, env={"EMBEDFLEET_MODEL_CONFIG": str(config)}
    )
    assert result.returncode == 0, result.stderr
    import json

    rows = json.loads(result.stdout)
    assert [r["worker"] for r in rows] == [worker.node]
    models = {m["name"]: m for m in rows[0]["models"]}
    assert set(models) == {*MODELS, "mem-huge"}
    loaded = [m for m in models.values() if m["loaded"]]
    assert 1 <= len(loaded) <= 2 and models["mem-a"]["loaded"]
    for m in loaded:
        assert m["ram_gb_config"] == RAM_GB
        assert m["ram_gb_measured"] is not None and m["ram_gb_measured"] > 0
        assert m["ram_method"] in {"tensors", "rss"}
        assert m["hits"] >= 1 and m["last_used"] > 0
    assert not models["mem-huge"]["loaded"] and models["mem-huge"]["ram_gb_measured"] is None


def test_a_model_that_can_never_fit_fails_its_chunks_with_both_numbers(memory_fleet):
    client, _, _ = memory_fleet
    job = client.submit(TEXTS[:1], model="mem-huge")
    deadline = time.monotonic() + 60
    while (status := job.status())["state"] not in ("FAILURE", "SUCCESS"):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["state"] == "FAILURE"
    error = " ".join(map(str, status["errors"] if isinstance(status["errors"], list) else
                         status["errors"].values()))  # fmt: skip
    assert "ModelTooLargeError" in error and "4.00 GB" in error and "0.60 GB" in error


def test_the_watchdog_runs_in_the_worker(memory_fleet):
    _, worker, _ = memory_fleet
    started = _events(worker.log(), "watchdog_started")
    assert len(started) == 1
    assert float(started[0]["interval_s"]) == 0.5
    assert float(started[0]["budget_gb"]) == BUDGET_GB


def test_the_watchdog_never_evicts_a_model_a_running_task_holds(redis_server, tmp_path):
    # Given a worker whose watchdog always finds memory short (a floor above any machine),
    # serving a model whose encode takes 50 ms a text (the lease is the cache's, whatever
    # the model: no torch to import for it)
    slow = {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.25}
    config = write_config(tmp_path / "models.json", {"mem-leased": slow})
    client = EmbeddingClient(config_source=str(config))
    env = {
        "EMBEDFLEET_MEMORY_FLOOR_GB": "100000",
        "EMBEDFLEET_WATCHDOG_INTERVAL_S": "0.1",
        SLOW_ENV: "0.05",
    }
    worker = WorkerProcess(config, env=env).wait_ready(client.app)
    try:
        # When one chunk encodes long enough for several checks (1.6 s, 0.1 s apart)
        texts = [f"{i} memory budgets keep workers alive under load" for i in range(32)]
        vectors = client.submit(texts, model="mem-leased", max_texts=32).wait(timeout=180)
        assert vectors.shape[0] == 32
        deadline = time.monotonic() + 30  # the watchdog takes the model once it is idle
        while not _events(worker.log(), "model_evicted"):
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.1)
    finally:
        worker.stop()
    # Then, while the task held it, the watchdog said it could evict nothing
    log = worker.log()
    loaded_at = log.index("event=model_loaded model=mem-leased")
    evicted_at = log.index("event=model_evicted model=mem-leased")
    stuck_at = log.index('evicted="none (in use: mem-leased)"', loaded_at)
    assert loaded_at < stuck_at < evicted_at
    assert "reason='watchdog: available memory below floor" in log[evicted_at:]
