"""Worker metrics without a server or a worker: a real model cache and watchdog emit
events, the chunk signals emit theirs, and the metrics are read from the registry.
The end-to-end scrape is tests/integration/test_metrics.py."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tasks.contract.errors import ConfigError, JobCancelled
from tasks.contract.settings import Settings, load_settings
from tasks.routing import DATASET_TASK, EMBED_TASK
from workers.config.loader import parse_model_config
from workers.memory.model_cache import ModelCache
from workers.memory.watchdog import MemoryWatchdog
from workers.observability.endpoint import build_metrics
from workers.observability.event_log import LogSubscriber
from workers.observability.events import Events, ModelLoaded, Subscriber, TextsEncoded
from workers.observability.metrics import WorkerMetrics
from workers.observability.token_counts import TokenCounter, estimate
from workers.serving.chunk_events import ChunkSignals
from workers.serving.runtime import Runtime

MINILM = {
    "type": "sentence_transformer",
    "model_path": "sentence-transformers/all-MiniLM-L6-v2",
    "RAM": 0.5,
}
HASH = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.25}


@pytest.fixture
def fleet():
    """A real runtime (cache of plugin models) whose events feed real metrics."""
    config = parse_model_config({"minilm": MINILM, "hash": HASH, "hash2": HASH})
    events = Events([LogSubscriber()])
    runtime = Runtime(config, Settings(embed_cache=False), budget_gb=2.0, events=events)
    metrics = build_metrics(lambda: runtime)
    events.subscribe(metrics)
    return SimpleNamespace(runtime=runtime, events=events, metrics=metrics)


def values(metrics: WorkerMetrics) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def one(name: str, **labels: str) -> tuple[str, frozenset]:
    return (name, frozenset(labels.items()))


def _run(signals, task_id, state, retval=None, model="hash", texts=("a b", "c")):
    task = SimpleNamespace(name=EMBED_TASK)
    kwargs = {"model": model, "texts": list(texts)}
    signals.on_prerun(task_id=task_id, task=task)
    signals.on_postrun(task_id=task_id, task=task, kwargs=kwargs, retval=retval, state=state)


@pytest.mark.parametrize(("raw", "port"), [("", 0), ("0", 0), ("9100", 9100)])
def test_metrics_port_from_the_settings(raw, port):
    assert load_settings({"EMBEDFLEET_METRICS_PORT": raw}).metrics_port == port


@pytest.mark.parametrize("raw", ["x", "70000", "-1"])
def test_a_bad_metrics_port_names_the_variable(raw):
    with pytest.raises(ConfigError, match="^EMBEDFLEET_METRICS_PORT="):
        load_settings({"EMBEDFLEET_METRICS_PORT": raw})


def test_chunk_outcomes_are_counted_by_model_and_status(fleet):
    signals = ChunkSignals(fleet.events)
    fleet.events.subscribe(signals)
    _run(signals, "j.0", "SUCCESS")
    _run(signals, "j.1", "FAILURE", retval=ValueError("bad"))
    _run(signals, "j.2", "FAILURE", retval=JobCancelled("cancelled"))
    _run(signals, "j.3", "RETRY")
    signals.on_postrun(task_id="x", task=SimpleNamespace(name="other.task"), state="SUCCESS")
    signals.on_revoked(request=SimpleNamespace(name=EMBED_TASK, kwargs={"model": "hash"}))
    v = values(fleet.metrics)
    for status in ("ok", "failed", "cancelled", "retry", "revoked"):
        assert v[one("embedfleet_chunks_total", model="hash", kind="list", status=status)] == 1
    assert v[one("embedfleet_texts_total", model="hash", kind="list")] == 2
    # a plugin type has no tokenizer on disk: the producer's estimate
    assert v[one("embedfleet_tokens_total", model="hash", kind="list")] == estimate(
        ["a b", "c"], 256
    )
    assert v[one("embedfleet_encode_seconds_count", model="hash", kind="list")] == 1


def test_dataset_chunks_are_counted_by_what_their_worker_encoded(fleet):
    # Given a dataset chunk: its message carries no texts; the runtime, in the task's
    # thread, reports the 3 rows it encoded (in two calls)
    signals = ChunkSignals(fleet.events)
    fleet.events.subscribe(signals)
    task = SimpleNamespace(name=DATASET_TASK)
    signals.on_prerun(task_id="d.0", task=task)
    fleet.events.emit(TextsEncoded(model="hash", texts=("a b", "c")))
    fleet.events.emit(TextsEncoded(model="hash", texts=("d e f",)))
    kwargs = {"job_id": "d", "index": 0, "model": "hash"}
    signals.on_postrun(task_id="d.0", task=task, kwargs=kwargs, state="SUCCESS")
    # and a later encode outside any chunk is not charged to it
    fleet.events.emit(TextsEncoded(model="hash", texts=("stray",)))
    signals.on_prerun(task_id="d.1", task=task)
    signals.on_postrun(task_id="d.1", task=task, kwargs=kwargs, state="FAILURE")
    # Then rows, tokens, chunks and encode time are counted under kind="dataset"
    v = values(fleet.metrics)
    assert v[one("embedfleet_chunks_total", model="hash", kind="dataset", status="ok")] == 1
    assert v[one("embedfleet_chunks_total", model="hash", kind="dataset", status="failed")] == 1
    assert v[one("embedfleet_texts_total", model="hash", kind="dataset")] == 3
    assert v[one("embedfleet_tokens_total", model="hash", kind="dataset")] == estimate(
        ["a b", "c", "d e f"], 256
    )
    assert v[one("embedfleet_encode_seconds_count", model="hash", kind="dataset")] == 1


def test_a_load_inside_a_chunk_is_not_encode_time(fleet):
    # Given a chunk whose task thread loads a model that takes 100 s (reported)
    signals = ChunkSignals(fleet.events)
    fleet.events.subscribe(signals)
    task = SimpleNamespace(name=EMBED_TASK)
    signals.on_prerun(task_id="j.0", task=task)
    fields = {f.name: 0 for f in dataclasses.fields(ModelLoaded)}
    fleet.events.emit(ModelLoaded(**{**fields, "model": "hash", "type": "x", "seconds": 100.0}))
    signals.on_postrun(
        task_id="j.0", task=task, kwargs={"model": "hash", "texts": ["a"]}, state="SUCCESS"
    )
    # Then the chunk's encode time leaves the load out (else it would be >= 100 s)
    v = values(fleet.metrics)
    assert v[one("embedfleet_encode_seconds_sum", model="hash", kind="list")] < 100
    assert v[one("embedfleet_model_load_seconds_sum", model="hash")] == 100


def test_a_real_cache_moves_the_load_eviction_and_unload_counters(fleet):
    # Given a 2 GB budget: minilm (0.5) is not built here; hash and hash2 are plugins
    cache = fleet.runtime.cache
    cache.budget_gb = 0.3  # one 0.25 GB model at a time
    # When hash loads, hash2's load evicts it, and a reload drops hash2
    cache.load("hash")
    cache.load("hash2")
    cache.unload("hash2", reason="removed by reload")
    v = values(fleet.metrics)
    assert v[one("embedfleet_model_loads_total", model="hash")] == 1
    assert v[one("embedfleet_model_loads_total", model="hash2")] == 1
    assert v[one("embedfleet_model_load_seconds_count", model="hash")] == 1
    assert v[one("embedfleet_model_evictions_total", model="hash")] == 1
    assert v[one("embedfleet_model_unloads_total", model="hash2")] == 1
    assert one("embedfleet_model_evictions_total", model="hash2") not in v
    assert one("embedfleet_model_unloads_total", model="hash") not in v
    assert v[one("embedfleet_model_loaded", model="hash")] == 0
    assert v[one("embedfleet_model_loaded", model="hash2")] == 0


def test_a_real_watchdog_counts_its_shortages(fleet):
    cache = fleet.runtime.cache
    cache.load("hash")
    dog = MemoryWatchdog(cache, interval_s=1, floor_gb=1.0, available=lambda: 0.1,
                         events=fleet.events)  # fmt: skip
    dog.check_once()
    v = values(fleet.metrics)
    assert v[one("embedfleet_watchdog_short_total", reason="low available memory")] == 1
    assert v[one("embedfleet_model_evictions_total", model="hash")] == 1


def test_a_failing_subscriber_breaks_neither_the_load_nor_the_others(fleet, caplog):
    class Broken(Subscriber):
        def on_model_loaded(self, event):
            raise RuntimeError("observer bug")

    fleet.events.unsubscribe(fleet.metrics)
    fleet.events.subscribe(Broken())
    fleet.events.subscribe(fleet.metrics)  # after the broken one
    assert fleet.runtime.cache.load("hash") is not None
    assert values(fleet.metrics)[one("embedfleet_model_loads_total", model="hash")] == 1
    assert "event=subscriber_failed subscriber=Broken hook=on_model_loaded" in caplog.text


def test_collector_reads_the_runtime_at_scrape_time(fleet):
    v = values(fleet.metrics)
    assert v[one("embedfleet_model_loaded", model="minilm")] == 0
    assert v[one("embedfleet_model_ram_config_bytes", model="hash")] == 0.25 * 1024**3
    assert v[one("embedfleet_worker_memory_budget_bytes")] == 2.0 * 1024**3
    assert v[one("embedfleet_worker_rss_bytes")] > 0
    (info,) = [dict(k[1]) for k in v if k[0] == "embedfleet_config_info"]
    assert info["models"] == "hash,hash2,minilm" and len(info["config_hash"]) == 16
    fleet.runtime.cache.load("hash")
    assert values(fleet.metrics)[one("embedfleet_model_loaded", model="hash")] == 1


def test_tokens_are_counted_with_the_models_tokenizer():
    config = parse_model_config({"minilm": MINILM, "short": {**MINILM, "max_seq_length": 8}})
    counter = TokenCounter()
    text = " ".join(["a"] * 20)  # 20 word pieces in 39 bytes
    # [CLS] + 20 + [SEP]; the estimate would say ceil(39 / 4) + 2 = 12
    assert estimate([text], 256) == 12
    assert counter.count("minilm", config["minilm"], [text]) == 22
    assert counter.count("short", config["short"], [text]) == 8  # truncated at the window
    assert counter.count("minilm", config["minilm"], [text, "hi"]) == 25


def test_the_cache_emits_through_the_hub_it_was_given_not_the_process_one():
    config = parse_model_config({"hash": HASH})
    seen: list[str] = []

    class Recorder(Subscriber):
        def on_model_loaded(self, event):
            seen.append(event.model)

    cache = ModelCache(config.models, 1.0, events=Events([Recorder()]))
    cache.load("hash")
    assert seen == ["hash"]


def test_a_model_dropped_while_leased_is_retired_then_unloaded_when_its_lease_ends(fleet):
    seen: list[tuple[str, str]] = []

    class Recorder(Subscriber):
        def on_model_retired(self, event):
            seen.append(("retired", event.model))

        def on_model_unloaded(self, event):
            seen.append(("unloaded", event.model))

    fleet.events.subscribe(Recorder())
    cache = fleet.runtime.cache
    with cache.lease("hash"):
        cache.unload("hash", reason="removed by reload")
        assert seen == [("retired", "hash")]
        assert (
            values(fleet.metrics).get(one("embedfleet_model_unloads_total", model="hash")) is None
        )
    assert seen == [("retired", "hash"), ("unloaded", "hash")]
    assert values(fleet.metrics)[one("embedfleet_model_unloads_total", model="hash")] == 1
