"""The gateway's ``/metrics``: queue depth over every priority list kombu makes, the
oldest waiting chunk, jobs by kind and state, live workers, HTTP by route and status."""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import DEFAULT_MODEL, default_entry, write_config

pytestmark = pytest.mark.integration


def _scrape(gateway) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=30) as got:
        text = got.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_queue_depth_counts_every_priority_list(gateway, worker, tmp_path, redis_server):
    from producers import EmbeddingClient
    from tasks.routing import queue_for

    # Given a model no worker consumes, with a list job (kombu step 0: `embed.<model>`)
    # and a dataset job (step 9: `embed.<model>\x06\x169`) waiting on its queue
    config = write_config(
        tmp_path / "models.json",
        {
            DEFAULT_MODEL: default_entry(),
            "queued-model": {"type": "tests.plugins:HashModel", "model_path": "x", "RAM": 0.01},
        },
    )
    producer = EmbeddingClient(config_source=str(config))
    listed = producer.submit([f"text {i}" for i in range(10)], model="queued-model", max_texts=2)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(30)))
    dataset = producer.submit_dataset(
        str(rows), "queued-model", str(tmp_path / "out") + "/", chunk_rows=10
    )
    redis = producer.redis
    queue = queue_for("queued-model")
    assert redis.llen(queue) == 5 and redis.llen(queue + "\x06\x169") == 3
    try:
        # When the gateway is scraped
        samples = _scrape(gateway)
        # Then the depth is both lists together, and the oldest chunk's age is known
        model = (("model", "queued-model"),)
        assert samples[("embedfleet_queue_depth", model)] == 8
        assert samples[("embedfleet_oldest_waiting_chunk_seconds", model)] > 0
        assert samples[("embedfleet_live_workers", model)] == 0
        live = samples[("embedfleet_live_workers", (("model", DEFAULT_MODEL),))]
        assert live >= 1
        assert samples[("embedfleet_jobs", (("kind", "list"), ("state", "PENDING")))] >= 1
        assert samples[("embedfleet_jobs", (("kind", "dataset"), ("state", "PENDING")))] >= 1
    finally:
        listed.cancel()
        dataset.cancel()
        redis.delete(queue, queue + "\x06\x169")


def test_http_requests_are_counted_by_route_and_status(gateway, openai_client):
    import openai

    openai_client.models.list()
    with pytest.raises(openai.NotFoundError):
        openai_client.files.retrieve("file-none")
    samples = _scrape(gateway)
    ok = (("method", "GET"), ("route", "/v1/models"), ("status", "200"))
    missing = (("method", "GET"), ("route", "/v1/files/{file_id}"), ("status", "404"))
    assert samples[("embedfleet_gateway_requests_total", ok)] >= 1
    assert samples[("embedfleet_gateway_requests_total", missing)] >= 1
    assert samples[("embedfleet_gateway_request_seconds_count", ok)] >= 1
