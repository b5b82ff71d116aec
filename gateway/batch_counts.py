"""A running batch's ``request_counts``, counted from its job's chunks, not estimated.

A batch's input is one file; its job's plan cuts it into chunks at request boundaries,
chunk ``i`` holding requests ``first_record[i]`` up to the next chunk's first (the last
up to the batch's total), refused requests (judged at submit) included. So:

- ``completed``: the requests of the chunks done, less the refused among them;
- ``failed``: every refused request, plus the requests of chunks that failed (a chunk
  skipped because the batch was cancelled did not fail: it never ran).

This is what the output and error files will hold, line for line, once assembled
(``gateway.batch_runs``). Reading it costs the plan (48 bytes a chunk), the done bitmap
and the failed chunks: a few Redis reads per look at a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.jobs import datasets, jobstore


def request_counts(redis: Any, job_id: str, total: int) -> tuple[int, int]:
    """``(completed, failed)`` requests of batch job ``job_id`` of ``total`` requests now."""
    plan = datasets.chunks(redis, job_id)
    refused = [int(e["request"]) for e in datasets.refused(redis, job_id)]
    done = datasets.bits(redis, job_id, "donebits", int(plan.size))
    _, failed = jobstore.progress(redis, job_id)
    return counts_of(plan["first_record"], total, refused, done, failed)


def counts_of(
    first_records: np.ndarray,
    total: int,
    refused: list[int],
    done: np.ndarray,
    failed: dict[int, str],
) -> tuple[int, int]:
    """``(completed, failed)`` of a batch of ``total`` requests whose chunks start at
    request ``first_records`` (in order), ``refused`` the requests refused at submit,
    ``done`` a flag per chunk, ``failed`` the failure of each failed chunk."""
    rejected = np.sort(np.asarray(refused, dtype=np.int64))
    if first_records.size == 0:
        return 0, int(rejected.size)
    starts = first_records.astype(np.int64)
    bounds = np.r_[starts, max(total, int(starts[-1]))]
    refused_in = np.diff(np.searchsorted(rejected, bounds, side="left"))
    served = np.diff(bounds) - refused_in  # servable requests of each chunk
    broke = [
        i
        for i, message in failed.items()
        if i < starts.size and not done[i] and not jobstore.skipped_as_cancelled(message)
    ]
    return int(served[done].sum()), int(rejected.size + served[broke].sum())
