"""Redis restarted mid-job (append-only persistence, same port): the worker reconnects
and keeps consuming, the job completes, and a job submitted afterwards completes too.

A message the worker had taken when Redis went away is normally given back when its
channel closes, but kombu cannot give it back while the server is down: then it waits
in the unacked hash until the visibility timeout (seen once in ~10 runs under load).
The test runs with a 20 s timeout so that case completes too: no row is ever lost,
a stranded chunk is only late.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import redis

from producers.server import start_server
from tasks.jobs import jobstore
from tests.fault.conftest import SLOW, wait_for
from tests.plugins import SLOW_ENV, hash_vector

pytestmark = pytest.mark.fault

#: Visibility timeout: a chunk stranded by the outage comes back after this.
STRANDED_AFTER_S = 20
#: Seconds the server stays down once the worker has noticed (longer than a chunk).
OUTAGE_S = 1.0


@pytest.mark.parametrize("embed_cache", ["1", "0"], ids=["embed-cache", "no-embed-cache"])
def test_worker_survives_redis_restart_and_job_completes(make_fleet, embed_cache: str):
    # Given an append-only server and a worker that needs ~4 s for the whole job (a chunk
    # finishing mid-outage computes without the embedding cache, then retries storing
    # its result until Redis is back)
    fleet = make_fleet({"slow": SLOW}, visibility_s=STRANDED_AFTER_S, appendonly=True)
    worker = fleet.worker(
        concurrency=2, **{SLOW_ENV: "0.02", "EMBEDFLEET_EMBED_CACHE": embed_cache}
    )
    fleet.ready(worker)
    texts = [f"row {i} of the restart test" for i in range(200)]
    job = fleet.client.submit(texts, model="slow", max_texts=5)
    wait_for(lambda: len(jobstore.progress(fleet.redis(), job.id)[0]) >= 10, 60, "10 chunks done")

    # When the server is stopped, and started again on the same port and files
    fleet.server.stop()
    wait_for(lambda: "Connection to broker lost" in worker.log(), 30, "the worker to notice")
    time.sleep(OUTAGE_S)  # the fault itself: chunks in flight finish while Redis is away
    fleet.server = start_server(fleet.port, fleet.data_dir, appendonly=True)

    # Then the job completes with every row right
    vectors = job.wait(timeout=STRANDED_AFTER_S + 60)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    assert job.status()["state"] == "SUCCESS"
    # ... the same worker process still consumes: a new job completes on it
    assert worker.proc.poll() is None
    second = fleet.client.submit(texts[:40], model="slow", max_texts=5)
    np.testing.assert_array_equal(second.wait(timeout=60), vectors[:40])
    assert f"chunk_done job={second.id}" in worker.log()
    # ... it still answers remote control (its pidbox reconnected too)
    wait_for(lambda: ping(fleet.client.app, worker.node), 30, "a ping reply")
    # ... and no message was stranded in the unacked hash
    assert fleet.redis().hlen("unacked") == 0


def ping(app: Any, node: str) -> bool:
    """True when ``node`` answers. A broadcast from this process raises once after the
    restart: kombu's global producer pool still holds the old server's connection."""
    try:
        return bool(app.control.ping(destination=[node], timeout=1))
    except redis.ConnectionError:
        return False
