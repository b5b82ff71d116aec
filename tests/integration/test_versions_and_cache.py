"""Model versions pinned per job, A/B aliases, and the fleet-wide embedding cache."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from producers import EmbeddingClient
from tests.plugins import hash_vector
from tests.support import DEFAULT_MODEL, SAMPLE, WorkerProcess, run_cli, write_config

pytestmark = pytest.mark.integration


def _vm(version: str) -> dict:
    return {
        "type": "tests.version_model:VersionedGateModel",
        "model_path": "none",
        "RAM": 0.01,
        "version": version,
    }


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_reload_mid_job_never_mixes_versions(redis_server, tmp_path):
    config = write_config(tmp_path / "models.json", {"vm": _vm("1")})
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(config, concurrency=1).wait_ready(client.app)
    try:
        gate = tmp_path / "gate"
        texts = [f"GATE:{gate} the longest text, so it is in chunk 0"] + [f"t{i}" for i in range(9)]
        job = client.submit(texts, model="vm", max_texts=2)
        _wait_for(Path(f"{gate}.entered"))  # chunk 0 is encoding with version 1
        # When the model changes while the job is half done
        write_config(config, {"vm": _vm("2")})
        [row] = client.reload(destination=[worker.node])
        assert row["changed"] == ["vm"]
        gate.touch()
        vectors = job.wait(timeout=60)
        # Then every row of the job comes from the version it was pinned to
        expected = np.stack([hash_vector(t) for t in texts]) + 1.0
        np.testing.assert_array_equal(vectors, expected)
        assert job.status()["version"] == "1"
        # and a new job gets the new version
        assert client.embed(["fresh"], model="vm")[0][0] == hash_vector("fresh")[0] + 2.0
    finally:
        worker.stop()


def test_a_version_no_worker_can_load_fails_the_job_clearly(redis_server, tmp_path):
    config = write_config(tmp_path / "models.json", {"vm2": _vm("3")})
    client = EmbeddingClient(config_source=str(config))
    job = client.submit(["a", "b"], model="vm2")  # pinned to version 3, nobody serving yet
    write_config(config, {"vm2": _vm("4")})
    worker = WorkerProcess(config).wait_ready(client.app)
    try:
        vectors = job.wait(timeout=60, allow_failed=True)
        status = job.status()
        assert status["state"] == "FAILURE" and np.isnan(vectors).all()
        assert "changed during the job" in status["errors"][0]["error"]
        assert "'3'" in status["errors"][0]["error"]
    finally:
        worker.stop()


def test_alias_assigns_targets_deterministically_and_as_weighted(redis_server, tmp_path):
    hashed = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}
    config = write_config(
        tmp_path / "models.json",
        {
            "mini-a": hashed,
            "mini-b": {**hashed, "version": "b"},
            "mini": {"type": "alias", "targets": {"mini-a": 0.75, "mini-b": 0.25}},
        },
    )
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(config).wait_ready(client.app)
    try:
        jobs = [client.submit(["same text"], model="mini", key=f"user-{i}") for i in range(40)]
        again = [client.submit(["same text"], model="mini", key=f"user-{i}") for i in range(40)]
        assert [j.model for j in jobs] == [j.model for j in again]
        split = Counter(j.model for j in jobs)
        assert set(split) == {"mini-a", "mini-b"} and split["mini-a"] > split["mini-b"]
        for job in jobs[:5]:
            np.testing.assert_array_equal(job.wait(timeout=60)[0], hash_vector("same text"))
            status = job.status()
            assert status["alias"] == "mini" and status["model"] == job.model
    finally:
        worker.stop()


def test_resubmitted_texts_come_from_the_cache_bit_identical(client, worker):
    from tasks.io.readers import read_texts

    texts = read_texts(SAMPLE)[200:260]
    first = client.submit(texts, model=DEFAULT_MODEL).wait(timeout=300)
    stats_before = _cache_stats(client, worker)
    second = client.submit(texts, model=DEFAULT_MODEL).wait(timeout=300)
    stats_after = _cache_stats(client, worker)
    assert first.tobytes() == second.tobytes()
    assert stats_after["hits"] - stats_before["hits"] == len(texts)
    # a job with the cache off recomputes: no new hits
    client.submit(texts, model=DEFAULT_MODEL, cache=False).wait(timeout=300)
    assert _cache_stats(client, worker)["hits"] == stats_after["hits"]


def _cache_stats(client, worker) -> dict:
    [row] = [r for r in client.models(destination=[worker.node]) if r["worker"] == worker.node]
    return row["embedding_cache"][DEFAULT_MODEL]


def test_compare_reports_agreement_between_two_models(client, worker, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"line number {i} about topic {i % 7}" for i in range(30)))
    proc = run_cli("compare", "hash-model", "hash-model", "--input", str(src), "--json", "-k", "5")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["texts"] == 30 and report["cosine_min"] == pytest.approx(1.0)
    assert report["top5_overlap"] == pytest.approx(1.0)


def test_embedding_cache_stops_writing_at_its_memory_cap(redis_server):
    import redis

    from workers.reuse.store import EmbeddingCache

    r = redis.Redis.from_url(redis_server.url)
    cache = EmbeddingCache(r, ttl_s=60, max_bytes=3 * 16 * 4)
    vectors = np.ones((2, 16), dtype=np.float32)
    assert cache.put_many("capped", "v", ["a", "b"], vectors) is True
    assert cache.put_many("capped", "v", ["c", "d"], vectors) is False  # 4 rows > 3 allowed
    found = cache.get_many("capped", "v", ["a", "b", "c"])
    assert found[0] is not None and found[1] is not None and found[2] is None
