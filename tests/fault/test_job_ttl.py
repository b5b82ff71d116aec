"""Issue 5: every key of a job expires together. The job record keeps the TTL its
producer gave it; a worker whose own ``EMBEDFLEET_RESULT_TTL_S`` differs writes what it
writes for the job (done set, failures, chunk results, usage) with the record's TTL, so
a job never outlives its done set and results (``status`` 0/N, ``wait()`` spinning)."""

from __future__ import annotations

import pytest

from producers import EmbeddingClient
from tasks.jobs import jobstore
from tests.fault.conftest import HASH, wait_for
from tests.plugins import POISON

pytestmark = pytest.mark.fault

WORKER_TTL_S = 600  # the worker's own setting
CLIENT_TTL_S = 30 * 24 * 3600  # the producer's: 30 days


def test_worker_written_keys_of_a_job_take_the_ttl_its_producer_recorded(make_fleet):
    # Given a worker whose TTL is 10 minutes and a producer whose TTL is 30 days
    fleet = make_fleet({"hash-model": HASH}, env={"EMBEDFLEET_RESULT_TTL_S": str(WORKER_TTL_S)})
    fleet.ready(fleet.worker())
    settings = fleet.client.settings.model_copy(update={"result_ttl_s": CLIENT_TTL_S})
    client = EmbeddingClient(
        redis_url=fleet.server.url, config_source=str(fleet.config), settings=settings
    )
    # When a job with a chunk that fails runs to its end
    texts = [f"row {i}" for i in range(6)]
    texts[4] = f"row 4 {POISON}"
    job = client.submit(texts, model="hash-model", max_texts=2)
    wait_for(lambda: job.status()["state"] in ("SUCCESS", "FAILURE"), 120, "the job to end")
    assert job.status()["state"] == "FAILURE"  # chunk 2 failed, chunks 0 and 1 done
    # Then the record keeps the producer's TTL, and every key the worker wrote has it too
    redis = fleet.redis()
    prefix = jobstore.PREFIX + job.id
    results = [
        client.app.backend.get_key_for_task(jobstore.chunk_task_id(job.id, i)).decode()
        for i in range(3)
    ]
    written = [prefix + ":done", prefix + ":failed", prefix + ":usage", *results]
    ttls = {key: redis.ttl(key) for key in [prefix, *written]}
    assert all(CLIENT_TTL_S - 600 < ttl <= CLIENT_TTL_S for ttl in ttls.values()), ttls
    assert redis.hget(prefix, "ttl_s") == str(CLIENT_TTL_S).encode()


def test_every_key_of_a_dataset_job_takes_the_ttl_its_producer_recorded(make_fleet, tmp_path):
    # Given a worker whose TTL is 10 minutes and a producer whose TTL is 30 days
    fleet = make_fleet({"hash-model": HASH}, env={"EMBEDFLEET_RESULT_TTL_S": str(WORKER_TTL_S)})
    fleet.ready(fleet.worker())
    settings = fleet.client.settings.model_copy(update={"result_ttl_s": CLIENT_TTL_S})
    client = EmbeddingClient(
        redis_url=fleet.server.url, config_source=str(fleet.config), settings=settings
    )
    (tmp_path / "in.txt").write_text("".join(f"row {i}\n" for i in range(40)))
    # When a dataset job of several windows of chunks runs to its end (workers send the
    # later chunks and write the parts, the manifest and the done counts)
    job = client.submit_dataset(
        str(tmp_path / "in.txt"), "hash-model", str(tmp_path / "out") + "/", chunk_rows=5, window=2
    )
    job.wait(timeout=120)
    assert job.status()["state"] == "SUCCESS"
    # Then every key of the job lasts as long as its record: the producer's 30 days
    redis = fleet.redis()
    keys = [k.decode() for k in redis.scan_iter(match=jobstore.PREFIX + job.id + "*")]
    assert len(keys) > 3, keys
    ttls = {key: redis.ttl(key) for key in keys}
    assert all(CLIENT_TTL_S - 600 < ttl <= CLIENT_TTL_S for ttl in ttls.values()), ttls
