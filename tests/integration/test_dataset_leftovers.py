"""Nothing of a dataset job outlives it, with a real server and a real worker: chunks
still running when the job is deleted write nothing to Redis and remove their own
delivery keys; finished chunks leave no delivery keys; every key of a job expires with
it; the Redis bytes a job keeps per chunk stay under a bound (docs/DATASETS.md)."""

from __future__ import annotations

import pytest

from producers import EmbeddingClient
from tests.plugins import SLOW_ENV
from tests.support import WorkerProcess, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

FAST = "left-hash"
SLOW = "left-slow"
#: Bytes of Redis a finished dataset job may keep per chunk (measured ~67, see
#: docs/DATASETS.md "What stays in Redis").
BYTES_PER_CHUNK_BOUND = 80


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("leftovers")
    config = write_config(
        folder / "models.json",
        {
            FAST: {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01},
            SLOW: {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.01},
        },
    )
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(
        config, models=f"{FAST},{SLOW}", concurrency=2, log_dir=folder, env={SLOW_ENV: "0.05"}
    ).wait_ready(client.app)
    yield client, worker
    worker.stop()


def keys_naming(client: EmbeddingClient, job_id: str) -> list[str]:
    """Every key whose name holds the job id, and every running-set member that does."""
    redis = client.redis
    found = [k.decode() for k in redis.scan_iter(match=f"*{job_id}*", count=1000)]
    for running in redis.scan_iter(match="embedfleet:running:*"):
        found += [
            f"{running.decode()} {m.decode()}"
            for m in redis.smembers(running)
            if job_id.encode() in m
        ]
    return found


def messages_of(client: EmbeddingClient, job_id: str) -> int:
    """Chunk messages of the job still queued or unacknowledged."""
    redis, marker = client.redis, job_id.encode()
    count = sum(marker in v for v in redis.hvals("unacked"))
    for queue in redis.scan_iter(match=f"embed.{SLOW}*"):
        if redis.type(queue) == b"list":
            count += sum(marker in m for m in redis.lrange(queue, 0, -1))
    return count


def test_delete_of_a_running_job_leaves_no_key(fleet, tmp_path):
    client, worker = fleet
    # Given a job whose chunks take ~0.5 s each, two running and two waiting
    (tmp_path / "in.txt").write_text("".join(f"row {i}\n" for i in range(400)))
    job = client.submit_dataset(
        str(tmp_path / "in.txt"), SLOW, str(tmp_path / "out") + "/", chunk_rows=10, window=4
    )
    wait_for(lambda: job.status()["done"] >= 1, 60, "a first chunk done")
    running = wait_for(
        lambda: [k for k in keys_naming(client, job.id) if "embedfleet:running:" in k],
        30,
        "a chunk running",
    )
    assert running
    # When the job is deleted while chunks run and wait
    job.delete()
    # Then once they drained, nothing of the job is left in Redis: no record re-created
    # by a chunk finishing late, no sent/done bits, no delivery keys, no successors sent
    wait_for(lambda: messages_of(client, job.id) == 0, 60, "the job's chunks to drain")
    tombstone = f"embedfleet:deleted:{job.id}"  # `status` says deleted; it expires
    assert keys_naming(client, job.id) == [tombstone]
    assert 0 < client.redis.ttl(tombstone) <= client.settings.result_ttl_s
    assert f"event=dataset_chunk_orphan job={job.id}" in worker.log()


def test_finished_chunks_leave_no_delivery_keys_and_few_bytes(fleet, tmp_path):
    client, _ = fleet
    chunks = 400
    (tmp_path / "in.txt").write_text("".join(f"row {i}\n" for i in range(chunks)))
    job = client.submit_dataset(
        str(tmp_path / "in.txt"), FAST, str(tmp_path / "out") + "/", chunk_rows=1, window=32
    )
    job.wait(timeout=300)
    redis = client.redis
    keys = keys_naming(client, job.id)
    # only the job's own keys: no delivery counter, blame or last worker of any chunk
    assert keys and all(k.startswith(f"embedfleet:job:{job.id}") for k in keys), keys
    # every one expires with the job
    ttls = {k: redis.ttl(k) for k in keys}
    assert all(0 < t <= client.settings.result_ttl_s for t in ttls.values()), ttls
    used = sum(int(redis.memory_usage(k, samples=0) or 0) for k in keys)
    per_chunk = used / chunks
    print(f"redis bytes per chunk: {per_chunk:.1f} ({used} bytes, {len(keys)} keys)")
    assert per_chunk <= BYTES_PER_CHUNK_BOUND, (per_chunk, {k: redis.memory_usage(k) for k in keys})
