"""A real worker's Prometheus endpoint and JSON log lines, after real jobs.

The worker has its own config (model names no other test worker consumes), so every
count below is exact: 3 chunks of the real all-MiniLM-L6-v2, then a plugin model
whose load evicts it, with one chunk that fails.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasks.io.readers import read_texts
from tests.conftest import free_port
from tests.plugins import POISON
from tests.support import SAMPLE, WorkerProcess, default_entry, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

GB = 1024**3
MINILM, HASH = "metrics-minilm", "metrics-hash"
#: The JSON log test's worker serves models of its own: no other worker takes its chunks.
JSON_MINILM, JSON_HASH = "json-log-minilm", "json-log-hash"
BUDGET_GB = 4.0  # minilm (3 GB) + hash (2 GB) do not fit: loading hash evicts minilm


def start_worker(folder: Path, minilm: str, plugin: str):
    """A worker of two models (the real one and the plugin), with its metrics port and
    JSON log lines."""
    config = write_config(
        folder / "models.json",
        {
            minilm: default_entry(preload=False, RAM=3.0),
            plugin: {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 2.0},
        },
    )
    port = free_port()
    env = {
        "EMBEDFLEET_METRICS_PORT": str(port),
        "EMBEDFLEET_METRICS_ADDR": "127.0.0.1",
        "EMBEDFLEET_LOG_JSON": "1",
        "EMBEDFLEET_MEMORY_LIMIT_GB": str(BUDGET_GB),
    }
    from producers import EmbeddingClient

    client = EmbeddingClient(config_source=str(config))
    proc = WorkerProcess(config, env=env, log_dir=folder).wait_ready(client.app)
    return proc, client, config, f"http://127.0.0.1:{port}/metrics"


@pytest.fixture(scope="module")
def metrics_worker(redis_server, tmp_path_factory):
    """The worker whose counts the metrics test reads: no other test sends it work."""
    worker = start_worker(tmp_path_factory.mktemp("metrics"), MINILM, HASH)
    yield worker
    worker[0].stop()


@pytest.fixture
def fresh_worker(redis_server, tmp_path):
    """A worker of its own for a test that must see it load a model (the metrics
    worker's loads depend on which tests ran before)."""
    worker = start_worker(tmp_path, JSON_MINILM, JSON_HASH)
    yield worker
    worker[0].stop()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_follow_jobs_loads_and_evictions(metrics_worker, tmp_path):
    proc, client, config, url = metrics_worker
    # Given 40 real texts in 3 list chunks for the real model, a dataset job of 30 rows
    # in 2 chunks on it, then 3 one-text chunks for the plugin model (one poisoned),
    # whose load evicts the real model
    texts = read_texts(SAMPLE)[:40]
    first = client.submit(texts, model=MINILM, max_texts=16)
    assert first.record.total == 3
    first.wait(timeout=300)
    rows = read_texts(SAMPLE)[40:70]
    (tmp_path / "rows.txt").write_text("\n".join(rows) + "\n")
    dataset = client.submit_dataset(
        str(tmp_path / "rows.txt"), MINILM, str(tmp_path / "out") + "/", chunk_rows=15
    )
    dataset.wait(timeout=300)
    second = client.submit(["short", "a longer text", f"{POISON} here"], model=HASH, max_texts=1)
    second.wait(timeout=120, allow_failed=True)

    # When the endpoint is scraped (post-run signals land just after the job records)
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(url)
        done = sample(samples, "embedfleet_chunks_total", model=HASH, kind="list", status="failed")
        if done == 1.0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    # Then chunks, texts, tokens and encode times are counted by model and kind
    lst, ds = {"kind": "list"}, {"kind": "dataset"}
    assert sample(samples, "embedfleet_chunks_total", model=MINILM, status="ok", **lst) == 3
    assert sample(samples, "embedfleet_chunks_total", model=HASH, status="ok", **lst) == 2
    assert sample(samples, "embedfleet_chunks_total", model=HASH, status="failed", **lst) == 1
    assert sample(samples, "embedfleet_texts_total", model=MINILM, **lst) == 40
    assert sample(samples, "embedfleet_texts_total", model=HASH, **lst) == 2
    assert sample(samples, "embedfleet_tokens_total", model=MINILM, **lst) == real_tokens(texts)
    assert sample(samples, "embedfleet_encode_seconds_count", model=MINILM, **lst) == 3
    assert sample(samples, "embedfleet_encode_seconds_sum", model=MINILM, **lst) > 0
    # dataset chunks too: their rows are read by the worker, not carried by the message
    assert sample(samples, "embedfleet_chunks_total", model=MINILM, status="ok", **ds) == 2
    assert sample(samples, "embedfleet_texts_total", model=MINILM, **ds) == 30
    assert sample(samples, "embedfleet_tokens_total", model=MINILM, **ds) == real_tokens(rows)
    assert sample(samples, "embedfleet_encode_seconds_count", model=MINILM, **ds) == 2
    # loads, load seconds and the eviction of the real model by the plugin's load
    assert sample(samples, "embedfleet_model_loads_total", model=MINILM) == 1
    assert sample(samples, "embedfleet_model_loads_total", model=HASH) == 1
    assert sample(samples, "embedfleet_model_load_seconds_count", model=MINILM) == 1
    assert sample(samples, "embedfleet_model_load_seconds_sum", model=MINILM) > 0
    assert sample(samples, "embedfleet_model_evictions_total", model=MINILM) == 1
    assert sample(samples, "embedfleet_model_unloads_total", model=MINILM) is None
    assert sample(samples, "embedfleet_model_evictions_total", model=HASH) is None
    # what is loaded now, its RAM, and the worker's memory
    assert sample(samples, "embedfleet_model_loaded", model=MINILM) == 0
    assert sample(samples, "embedfleet_model_loaded", model=HASH) == 1
    assert sample(samples, "embedfleet_model_ram_config_bytes", model=MINILM) == 3.0 * GB
    # a plugin model with no tensors: what its Python objects hold, or the RSS growth
    measured = [
        (dict(labels), value)
        for (name, labels), value in samples.items()
        if name == "embedfleet_model_ram_measured_bytes"
    ]
    assert len(measured) == 1 and measured[0][0]["model"] == HASH
    assert measured[0][0]["method"] in {"objects", "rss"} and measured[0][1] > 0
    assert sample(samples, "embedfleet_worker_memory_budget_bytes") == BUDGET_GB * GB
    assert sample(samples, "embedfleet_worker_models_bytes") == 2.0 * GB
    rss = psutil.Process(proc.proc.pid).memory_info().rss  # the worker's own, read now
    assert 0.5 * rss < sample(samples, "embedfleet_worker_rss_bytes") < 2 * rss
    # and the config this worker runs, as an info metric
    from workers.config.loader import load_model_config

    info = [k for k in samples if k[0] == "embedfleet_config_info"]
    assert len(info) == 1
    labels = dict(info[0][1])
    assert labels["config_hash"] == load_model_config(str(config)).config_hash
    assert labels["models"] == f"{HASH},{MINILM}"


def test_worker_logs_are_json_lines(fresh_worker):
    proc, client, _, _ = fresh_worker
    # Given a worker that loads the real model for a job, then serves the plugin model
    client.submit(["the real model loads for this"], model=JSON_MINILM).wait(timeout=300)
    job = client.submit(["one json line please"], model=JSON_HASH)
    job.wait(timeout=120)
    wait_for(lambda: job.id in proc.log(), 30, "the job's lines in the worker log")
    lines = [line for line in proc.log().splitlines() if line.strip()]
    # every log record is a JSON object (Celery's start banner is printed, not logged)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert not [line for line in lines if line.startswith("time=")]
    events = [r for r in records if "event" in r]
    assert {"level", "logger", "time"} <= set(events[0])
    loaded = [r for r in events if r["event"] == "model_loaded" and r["model"] == JSON_MINILM]
    assert len(loaded) == 1 and isinstance(loaded[0]["seconds"], float)
    chunk = [r for r in events if r["event"] == "chunk_done" and r.get("job") == job.id]
    assert len(chunk) == 1
    assert (chunk[0]["model"], chunk[0]["texts"]) == (JSON_HASH, 1)
    assert isinstance(chunk[0]["seconds"], float) and isinstance(chunk[0]["chunk"], int)
    assert any(r["event"] == "metrics_started" for r in events)
    # every event line the worker wrote came with its fields: none is left as text
    assert [r["message"] for r in records if r.get("message", "").startswith("event=")] == []


def real_tokens(texts: list[str]) -> int:
    """Tokens all-MiniLM-L6-v2 sees: its own tokenizer, truncated at 256 word pieces."""
    from transformers import AutoTokenizer

    from workers.sources.packaged import packaged_model_dir

    folder = packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    assert isinstance(folder, Path)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    ids = tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    return sum(len(row) for row in ids)
