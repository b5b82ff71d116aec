"""Broadcast reload with two real workers while jobs stream: nothing lost, changes live."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from producers import EmbeddingClient
from tasks.jobs import jobstore
from tests.plugins import hash_vector
from tests.support import WorkerProcess, run_cli, stop_all, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _entry(**extra):
    return {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01, **extra}


V1 = {"hash-a": _entry(), "hash-old": _entry(), "hash-chg": _entry(version="1")}
V2 = {"hash-a": _entry(), "hash-new": _entry(preload=True), "hash-chg": _entry(version="2")}


@pytest.fixture(scope="module")
def two_workers(redis_server, tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("reload") / "models.json", V1)
    client = EmbeddingClient(config_source=str(config))
    workers = [WorkerProcess(config) for _ in range(2)]
    for w in workers:
        w.wait_ready(client.app)
    yield client, config, workers
    stop_all(workers)


def _queues(client, workers):
    replies = client.app.control.inspect(
        destination=[w.node for w in workers], timeout=10
    ).active_queues()
    return {node: {q["name"] for q in qs} for node, qs in (replies or {}).items()}


def test_reload_adds_changes_and_removes_while_jobs_stream(two_workers):
    client, config, workers = two_workers
    write_config(config, V1)
    nodes = [w.node for w in workers]
    assert all(r["ok"] for r in client.reload(destination=nodes, timeout=30))
    stop = threading.Event()
    jobs: list = []

    def stream() -> None:
        i = 0
        while not stop.is_set():
            texts = [f"stream {i} text {k}" for k in range(12)]
            jobs.append((client.submit(texts, model="hash-a", max_texts=3), texts))
            i += 1

    def wait_for_jobs(count: int) -> None:
        wait_for(
            lambda: len(jobs) >= count, 60, lambda: f"{count} jobs streamed, {len(jobs)} so far"
        )

    producer = threading.Thread(target=stream)
    producer.start()
    try:
        # When the config changes and the reload is broadcast while jobs stream
        wait_for_jobs(3)
        write_config(config, V2)
        rows = client.reload(destination=nodes, timeout=30)
        wait_for_jobs(len(jobs) + 3)
    finally:
        stop.set()
        producer.join()
    # Then every worker applied the same difference
    assert sorted(r["worker"] for r in rows) == sorted(w.node for w in workers)
    for row in rows:
        assert row["ok"] and row["error"] is None
        assert (row["added"], row["removed"], row["changed"]) == (
            ["hash-new"],
            ["hash-old"],
            ["hash-chg"],
        )
    assert len({r["config_hash"] for r in rows}) == 1
    # and no chunk of the streaming jobs failed or went missing
    assert len(jobs) >= 6
    for job, texts in jobs:
        vectors = job.wait(timeout=120)
        assert job.status()["failed"] == 0
        np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    # the new model serves; the changed one answers with its new version
    np.testing.assert_array_equal(client.embed(["new"], model="hash-new")[0], hash_vector("new"))
    job = client.submit(["changed"], model="hash-chg")
    job.wait(timeout=60)
    meta = client.app.AsyncResult(jobstore.chunk_task_id(job.id, 0)).result
    assert meta["version"] == "2"
    # the removed model's queue is no longer consumed, the new one is
    for node, queues in _queues(client, workers).items():
        assert "embed.hash-old" not in queues, node
        assert {"embed.hash-new", "embed.hash-a", "embed.hash-chg"} <= queues, node
    # and the producer refuses the removed model (exit 2)
    proc = run_cli(
        "submit", "--model", "hash-old", "--text", "x", env={"EMBEDFLEET_MODEL_CONFIG": str(config)}
    )
    assert proc.returncode == 2 and "hash-old" in proc.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"hash-a": ', "invalid JSON"),
        (json.dumps({**V2, "hash-bad": {**_entry(), "type": "nope"}}), "unknown type 'nope'"),
        (json.dumps({**V2, "hash-neg": _entry(RAM=-1)}), "hash-neg"),
    ],
)
def test_a_bad_config_is_rejected_by_every_worker_and_the_old_one_keeps_serving(
    two_workers, content, needle
):
    client, config, workers = two_workers
    write_config(config, V2)
    nodes = [w.node for w in workers]
    good = client.reload(destination=nodes, timeout=30)
    assert all(r["ok"] for r in good)
    config.write_text(content)
    try:
        proc = run_cli("reload", "--json", *(f"--worker={n}" for n in nodes))
        rows = json.loads(proc.stdout)
        assert proc.returncode == 1
        assert len(rows) == 2
        for row in rows:
            assert row["ok"] is False and needle in row["error"]
            assert row["config_hash"] == good[0]["config_hash"]
    finally:
        write_config(config, V2)
    np.testing.assert_array_equal(client.embed(["ok"], model="hash-new")[0], hash_vector("ok"))


def test_models_shows_each_workers_config_hash(two_workers):
    client, config, workers = two_workers
    write_config(config, V2)
    nodes = [w.node for w in workers]
    [expected] = {r["config_hash"] for r in client.reload(destination=nodes, timeout=30)}
    hashes = {
        r["worker"]: r["config_hash"]
        for r in client.models(destination=nodes)
        if r["worker"] in nodes
    }
    assert hashes == dict.fromkeys(nodes, expected)
