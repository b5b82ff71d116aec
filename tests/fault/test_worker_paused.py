"""A heartbeat lapse without a death: a worker paused (SIGSTOP) past the lapse while it
holds a chunk, then resumed (SIGCONT). The other worker gives the paused one's chunk back
to the queue and finishes it; the resumed worker finishes its copy too, and its late
acknowledgement undoes nothing. Every row is in the output exactly once, none lost."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.guards.holders import HOLDERS_KEY, holder_of
from tests.fault.conftest import LAPSE_S, SLOW, wait_for
from tests.plugins import SLOW_ENV, hash_vector

pytestmark = pytest.mark.fault

#: Rows of the job, in chunks of 10 (~1.5 s each): the healthy worker runs the other
#: chunks alone for about as long as the paused one takes to lapse.
ROWS = 80


def test_a_paused_worker_loses_and_duplicates_nothing(make_fleet, tmp_path: Path):
    # Given two workers, each chunk taking ~1.5 s, the default visibility timeout
    fleet = make_fleet({"slow": SLOW}, env={SLOW_ENV: "0.15"}, visibility_s=None, lapse_s=LAPSE_S)
    paused, healthy = fleet.worker(), fleet.worker()
    fleet.ready(paused, healthy)
    redis = fleet.redis()
    texts = [f"row {i} of the pause test" for i in range(ROWS)]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"
    job = fleet.client.submit_dataset(
        str(tmp_path / "in.txt"), "slow", str(out) + "/", chunk_rows=10, window=4
    )
    me = f"{socket.gethostname()}:{paused.proc.pid}:"

    def held_by_paused() -> list[str]:
        held = [holder_of(v) for v in redis.hvals(HOLDERS_KEY)]
        return [task for worker, task in held if worker.startswith(me)]

    # When A is paused while it holds a chunk, past its heartbeat's lapse
    wait_for(held_by_paused, 60, "worker A to take a chunk")
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        (task,) = held_by_paused()
        lapsed = f"event=worker_lapsed worker={me}"
        wait_for(lambda: lapsed in healthy.log(), 90, "B to give back A's chunk")
        assert task in healthy.log().split(lapsed, 1)[1].splitlines()[0]
    finally:
        paused.proc.send_signal(signal.SIGCONT)

    # Then the job completes; A lives on
    job.wait(timeout=90)
    assert paused.proc.poll() is None
    files = sorted(out.glob("part-*.parquet"))
    assert len(files) == job.record.total == ROWS // 10
    table = pa.concat_tables([pq.read_table(f) for f in files])
    rows = table.column("row").to_numpy()
    assert sorted(rows.tolist()) == list(range(ROWS))  # none lost, none twice
    order = np.argsort(rows)
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)[order]
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    status = job.status()
    assert (status["state"], status["done"], status["failed"]) == ("SUCCESS", ROWS // 10, 0)
    assert status["waiting_on_dead_worker"] == []
    # ... and nothing is left unacknowledged once A has finished its copy
    wait_for(lambda: redis.hlen("unacked") == 0, 30, "every message acknowledged")
    assert redis.hlen(HOLDERS_KEY) == 0
