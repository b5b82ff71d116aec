"""A chunk that kills its worker on every delivery (as the OOM killer would with a model
that cannot fit) is failed after ``EMBEDFLEET_MAX_DELIVERIES`` deliveries, with an
error that says why, instead of killing worker after worker forever. With the default
visibility timeout (3,600 s): each dead worker's chunk comes back when its heartbeat
lapses (:data:`LAPSE_S` here), and the death is charged to the chunk as before."""

from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
import pytest

from tests.fault.conftest import KILLER, LAPSE_S, delivery_counts
from tests.plugins import KILL_MARKER, hash_vector

pytestmark = pytest.mark.fault

#: Deliveries allowed in this test (the default is 3; 2 keeps the test short).
MAX_DELIVERIES = 2


def test_chunk_that_kills_every_worker_fails_after_max_deliveries(make_fleet):
    # Given a supervisor that restarts a worker whenever it dies
    fleet = make_fleet(
        {"killer": KILLER},
        env={"EMBEDFLEET_MAX_DELIVERIES": str(MAX_DELIVERIES)},
        visibility_s=None,  # the default, 3,600 s: the lapse brings the chunk back
        lapse_s=LAPSE_S,
    )
    texts = [f"row {i} of the poison test" for i in range(40)]
    texts[17] = f"row 17 {KILL_MARKER}"
    worker = fleet.worker()
    fleet.ready(worker)

    # When a job holds one chunk that kills whichever worker runs it
    job = fleet.client.submit(texts, model="killer", max_texts=4)
    deaths = []
    deadline = time.monotonic() + 300  # a safety net: ~20 s per death
    while job.status()["state"] in {"PENDING", "RUNNING"}:
        assert len(deaths) <= MAX_DELIVERIES, "the poison chunk kept killing workers"
        assert time.monotonic() < deadline, f"job still running after deaths {deaths}"
        try:
            worker.proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:  # still alive: poll the job again
            continue
        deaths.append(worker.proc.returncode)
        # not waiting for it to answer a ping: kombu gives the chunk back as it starts,
        # and it may take the chunk and die before it answers
        worker = fleet.worker()

    # Then it killed exactly MAX_DELIVERIES workers and then failed, saying why
    assert deaths == [-signal.SIGKILL] * MAX_DELIVERIES
    status = job.status()
    assert (status["state"], status["failed"]) == ("FAILURE", 1)
    (error,) = status["errors"]
    assert f"delivered {MAX_DELIVERIES + 1} times" in error["error"]
    assert f"EMBEDFLEET_MAX_DELIVERIES={MAX_DELIVERIES}" in error["error"]
    assert error["error"].startswith("TooManyDeliveries")
    assert delivery_counts(fleet.redis(), job.id)[error["chunk"]] == MAX_DELIVERIES + 1
    # ... every other chunk is done and right; only the poison chunk's rows are missing
    vectors = job.wait(timeout=10, allow_failed=True)
    poison_rows = set(job.record.chunk_rows(error["chunk"]).tolist())
    assert 17 in poison_rows
    for row, text in enumerate(texts):
        if row in poison_rows:
            assert np.isnan(vectors[row]).all()
        else:
            np.testing.assert_array_equal(vectors[row], hash_vector(text))
    # ... the last worker is alive and serves the next job
    fleet.ready(worker)
    clean = fleet.client.submit(texts[:8], model="killer", max_texts=4)
    expected = np.stack([hash_vector(t) for t in texts[:8]])
    np.testing.assert_array_equal(clean.wait(timeout=30), expected)
    assert fleet.redis().hlen("unacked") == 0
