"""A worker SIGKILLed mid-dataset-job, with the default visibility timeout (3,600 s): its
chunk comes back once its heartbeat lapses (:data:`LAPSE_S` here), another worker
writes its part, and every row is in the output exactly once."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fault.conftest import LAPSE_S, SLOW, wait_for
from tests.plugins import HANG_ENV, hash_vector

pytestmark = pytest.mark.fault


def test_killed_worker_costs_no_row_and_duplicates_none(make_fleet, tmp_path: Path):
    # Given two workers; worker A freezes inside the first dataset chunk it takes
    fleet = make_fleet({"slow": SLOW}, visibility_s=None, lapse_s=LAPSE_S)  # timeout: 3,600 s
    hang_file = tmp_path / "frozen"
    frozen = fleet.worker(**{HANG_ENV: str(hang_file)})
    healthy = fleet.worker()
    fleet.ready(frozen, healthy)
    texts = [f"row {i} of the dataset kill test" for i in range(300)]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"

    # When a dataset job runs and A is SIGKILLed while it holds a chunk
    job = fleet.client.submit_dataset(
        str(tmp_path / "in.txt"), "slow", str(out) + "/", chunk_rows=10, window=4
    )
    wait_for(hang_file.exists, 60, "worker A to start a chunk")
    dead = f"{socket.gethostname()}:{frozen.proc.pid}:"
    frozen.kill()
    assert frozen.proc.returncode == -signal.SIGKILL

    # Then the job completes, every row once with its own text's vector
    job.wait(timeout=90)  # a safety net: the lapse is LAPSE_S, the timeout 3,600 s
    files = sorted(out.glob("part-*.parquet"))
    assert len(files) == job.record.total == 30
    table = pa.concat_tables([pq.read_table(f) for f in files])
    rows = table.column("row").to_numpy()
    assert sorted(rows.tolist()) == list(range(300))  # none lost, none twice
    order = np.argsort(rows)
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)[order]
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    status = job.status()
    assert (status["state"], status["done"], status["failed"]) == ("SUCCESS", 30, 0)
    # ... the dead worker's chunk was redone by B, and nothing is left unacknowledged
    assert "event=dataset_chunk_done" in healthy.log()
    assert f"event=worker_lapsed worker={dead}" in healthy.log()
    assert fleet.redis().hlen("unacked") == 0
