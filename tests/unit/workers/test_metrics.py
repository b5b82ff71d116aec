"""Worker metrics without a server or a worker: signal handlers, cache events, the
collector, token counts. The end-to-end scrape is tests/integration/test_metrics.py."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tasks.errors import ConfigError, JobCancelled
from tasks.routing import EMBED_TASK
from tasks.settings import load_settings
from workers.config.loader import parse_model_config
from workers.observability.metrics import WorkerMetrics
from workers.observability.token_counts import TokenCounter, estimate
from workers.serving.process import set_runtime
from workers.serving.runtime import Runtime

MINILM = {
    "type": "sentence_transformer",
    "model_path": "sentence-transformers/all-MiniLM-L6-v2",
    "RAM": 0.5,
}
HASH = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.25}


@pytest.fixture
def metrics():
    config = parse_model_config({"minilm": MINILM, "hash": HASH})
    set_runtime(Runtime(config, budget_gb=2.0))
    yield WorkerMetrics()
    set_runtime(None)


def values(metrics: WorkerMetrics) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _run(metrics, task_id, state, retval=None, model="hash", texts=("a b", "c")):
    task = SimpleNamespace(name=EMBED_TASK)
    kwargs = {"model": model, "texts": list(texts)}
    metrics.on_prerun(task_id=task_id, task=task)
    metrics.on_postrun(task_id=task_id, task=task, kwargs=kwargs, retval=retval, state=state)


@pytest.mark.parametrize(("raw", "port"), [("", 0), ("0", 0), ("9100", 9100)])
def test_metrics_port_from_the_settings(raw, port):
    assert load_settings({"EMBEDFLEET_METRICS_PORT": raw}).metrics_port == port


@pytest.mark.parametrize("raw", ["x", "70000", "-1"])
def test_a_bad_metrics_port_names_the_variable(raw):
    with pytest.raises(ConfigError, match="^EMBEDFLEET_METRICS_PORT="):
        load_settings({"EMBEDFLEET_METRICS_PORT": raw})


def test_chunk_outcomes_are_counted_by_model_and_status(metrics):
    _run(metrics, "j.0", "SUCCESS")
    _run(metrics, "j.1", "FAILURE", retval=ValueError("bad"))
    _run(metrics, "j.2", "FAILURE", retval=JobCancelled("cancelled"))
    _run(metrics, "j.3", "RETRY")
    metrics.on_postrun(task_id="x", task=SimpleNamespace(name="other.task"), state="SUCCESS")
    metrics.on_revoked(request=SimpleNamespace(name=EMBED_TASK, kwargs={"model": "hash"}))
    v = values(metrics)
    for status in ("ok", "failed", "cancelled", "retry", "revoked"):
        assert (
            v[("embedfleet_chunks_total", frozenset({"model": "hash", "status": status}.items()))]
            == 1
        )
    assert v[("embedfleet_texts_total", frozenset({"model": "hash"}.items()))] == 2
    # a plugin type has no tokenizer on disk: the producer's estimate
    assert v[("embedfleet_tokens_total", frozenset({"model": "hash"}.items()))] == estimate(
        ["a b", "c"], 256
    )
    assert v[("embedfleet_encode_seconds_count", frozenset({"model": "hash"}.items()))] == 1


def test_cache_log_events_count_loads_and_evictions(metrics):
    def event(msg: str, *args: object) -> None:
        record = logging.LogRecord("workers.memory.model_cache", logging.INFO, __file__, 1, msg, args, None)
        metrics.on_cache_event(record)

    event("event=model_loaded model=%s type=x seconds=%.2f ram_gb_config=%.3f", "minilm", 1.25, 0.5)
    event("event=%s model=%s reason=%r ram_gb=%.3f", "model_evicted", "minilm", "make room", 0.5)
    event(
        "event=%s model=%s reason=%r ram_gb=%.3f",
        "model_unloaded",
        "hash",
        "removed by reload",
        0.25,
    )
    event("event=model_retired model=%s reason=%r leases=%d", "hash", "reload", 1)
    v = values(metrics)
    one = frozenset({"model": "minilm"}.items())
    assert v[("embedfleet_model_loads_total", one)] == 1
    assert v[("embedfleet_model_load_seconds_sum", one)] == 1.25
    assert v[("embedfleet_model_evictions_total", one)] == 1
    assert v[("embedfleet_model_unloads_total", frozenset({"model": "hash"}.items()))] == 1
    assert ("embedfleet_model_evictions_total", frozenset({"model": "hash"}.items())) not in v


def test_collector_reads_the_runtime_at_scrape_time(metrics):
    v = values(metrics)
    assert v[("embedfleet_model_loaded", frozenset({"model": "minilm"}.items()))] == 0
    assert (
        v[("embedfleet_model_ram_config_bytes", frozenset({"model": "hash"}.items()))]
        == 0.25 * 1024**3
    )
    assert v[("embedfleet_worker_memory_budget_bytes", frozenset())] == 2.0 * 1024**3
    assert v[("embedfleet_worker_rss_bytes", frozenset())] > 0
    (info,) = [dict(k[1]) for k in v if k[0] == "embedfleet_config_info"]
    assert info["models"] == "hash,minilm" and len(info["config_hash"]) == 16


def test_tokens_are_counted_with_the_models_tokenizer():
    config = parse_model_config({"minilm": MINILM, "short": {**MINILM, "max_seq_length": 8}})
    counter = TokenCounter()
    text = " ".join(["a"] * 20)  # 20 word pieces in 39 bytes
    # [CLS] + 20 + [SEP]; the estimate would say ceil(39 / 4) + 2 = 12
    assert estimate([text], 256) == 12
    assert counter.count("minilm", config["minilm"], [text]) == 22
    assert counter.count("short", config["short"], [text]) == 8  # truncated at the window
    assert counter.count("minilm", config["minilm"], [text, "hi"]) == 25
