"""A worker SIGKILLed mid-chunk, with the default visibility timeout (3,600 s): once its
heartbeat lapses (``EMBEDFLEET_WORKER_LAPSE_S``, 30 s by default, :data:`LAPSE_S` here)
the other worker puts its chunk back on the queue, and the job completes, every row
right and present exactly once."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.fault.conftest import LAPSE_S, SLOW, delivery_counts, wait_for
from tests.plugins import HANG_ENV, hash_vector

pytestmark = pytest.mark.fault


def test_chunk_of_killed_worker_is_redelivered_and_job_completes(make_fleet, tmp_path: Path):
    # Given two workers; worker A freezes inside the first chunk it takes
    fleet = make_fleet({"slow": SLOW}, visibility_s=None, lapse_s=LAPSE_S)  # timeout: 3,600 s
    hang_file = tmp_path / "frozen"
    frozen = fleet.worker(**{HANG_ENV: str(hang_file)})
    healthy = fleet.worker()
    fleet.ready(frozen, healthy)
    texts = [f"row {i} of the kill test" for i in range(200)]

    # When a job runs and A is SIGKILLed while it holds a chunk
    job = fleet.client.submit(texts, model="slow", max_texts=5)
    wait_for(hang_file.exists, 60, "worker A to start a chunk")
    dead = f"{socket.gethostname()}:{frozen.proc.pid}:"
    frozen.kill()
    assert frozen.proc.returncode == -signal.SIGKILL

    # Then the job completes: every row equals its own text's vector, in input order
    # (the deadline is a safety net, not a measure: the lapse is LAPSE_S, the timeout 3,600 s)
    vectors = job.wait(timeout=90)
    expected = np.stack([hash_vector(t) for t in texts])
    np.testing.assert_array_equal(vectors, expected)
    status = job.status()
    assert (status["state"], status["done"], status["failed"]) == ("SUCCESS", status["total"], 0)
    # ... because exactly one chunk (A's) was delivered twice, and B finished it
    counts = delivery_counts(fleet.redis(), job.id)
    assert len(counts) == job.record.total
    redelivered = [index for index, n in counts.items() if n > 1]
    assert len(redelivered) == 1 and counts[redelivered[0]] == 2, counts
    assert f"event=chunk_redelivered job={job.id} chunk={redelivered[0]} delivery=2" in (
        healthy.log()
    )
    # ... because B saw A's heartbeat lapse and put A's chunk back (not the timeout)
    assert f"event=worker_lapsed worker={dead}" in healthy.log()
    # ... and nothing is left unacknowledged in Redis
    assert fleet.redis().hlen("unacked") == 0
