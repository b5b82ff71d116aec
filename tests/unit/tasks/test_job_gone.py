"""A chunk that ends after its job was deleted writes nothing back (tasks.jobs), and a
chunk's delivery keys go when it ends (tasks.jobs.deliveries)."""

from __future__ import annotations

import uuid

from tasks.jobs import datasets, deliveries, jobstore

TTL_S = 600  # seconds the records written here last


def test_writes_of_a_chunk_whose_job_is_gone_leave_no_key(redis_server):
    client = redis_server.client()
    job = uuid.uuid4().hex
    jobstore.mark_failed(client, job, 3, "late failure", ttl_s=TTL_S)
    datasets.mark_started(client, job)
    datasets.set_dimension(client, job, 16)
    datasets.mark_finished(client, job)
    assert datasets.mark_done(client, job, 3, 10, ttl_s=TTL_S) == -1
    assert list(client.scan_iter(match=f"*{job}*")) == []
    # while the job exists, the same calls write (and expire with it)
    client.hset(datasets.key(job), mapping={"kind": "dataset", "total": 4, "done": 0})
    client.expire(datasets.key(job), 100)
    jobstore.mark_failed(client, job, 3, "a failure", ttl_s=TTL_S)
    datasets.set_dimension(client, job, 16)
    assert client.hget(datasets.key(job, "failed"), 3) == b"a failure"
    assert client.hget(datasets.key(job), "dimension") == b"16"
    assert 0 < client.ttl(datasets.key(job, "failed")) <= TTL_S
    client.delete(datasets.key(job), datasets.key(job, "failed"))


def test_a_chunk_s_delivery_keys_go_when_it_ends(redis_server):
    client = redis_server.client()
    job = uuid.uuid4().hex
    client.hset(datasets.key(job), "total", 3)
    once, twice = jobstore.chunk_task_id(job, 0), jobstore.chunk_task_id(job, 1)
    deliveries.begin(client, once, 0, lapse_s=30.0, ttl_s=TTL_S)
    deliveries.begin(client, twice, 0, lapse_s=30.0, ttl_s=TTL_S)
    deliveries.begin(client, twice, 0, lapse_s=30.0, ttl_s=TTL_S)  # delivered again
    assert client.exists(deliveries.LAST_PREFIX + twice + ":0")
    deliveries.end(client, once, 0, ttl_s=TTL_S)
    deliveries.end(client, twice, 0, ttl_s=TTL_S)
    left = [k.decode() for k in client.scan_iter(match=f"*{job}*")]
    assert sorted(left) == [datasets.key(job), datasets.key(job, "redelivered")]
    assert client.hgetall(datasets.key(job, "redelivered")) == {b"1": b"2"}
    running = deliveries.RUNNING_PREFIX + deliveries.worker_id()
    assert not [m for m in client.smembers(running) if job.encode() in m]
    client.delete(datasets.key(job), datasets.key(job, "redelivered"))
