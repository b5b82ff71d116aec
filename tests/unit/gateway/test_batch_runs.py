"""Pieces of a batch's life that need no fleet: counting requests, fixed output ids."""

from __future__ import annotations

import io

import numpy as np

from gateway import batch_counts, batch_runs, filestore
from gateway.batch_store import BatchRecord, new_object


def test_requests_are_the_non_blank_lines_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(filestore, "BLOCK", 7)  # lines cut across blocks
    store = filestore.FileStore(str(tmp_path))
    store.save("file-a.jsonl", io.BytesIO(b'{"a": 1}\n\n  \n{"b": 2}\n{"c": 3}'))
    assert batch_runs.count_requests(store, "file-a") == 3
    store.save("file-b.jsonl", io.BytesIO(b"\n\n"))
    assert batch_runs.count_requests(store, "file-b") == 0


def test_output_ids_follow_from_the_batch():
    assert batch_runs.output_ids("batch_abc") == ("file-abc-output", "file-abc-errors")


def test_a_move_stamps_its_time_once():
    batch = BatchRecord(new_object("batch_x", "file-y", "/v1/embeddings", "24h", None))
    batch.move("in_progress")
    first = batch.obj["in_progress_at"]
    assert first is not None and batch.status == "in_progress"
    batch.move("in_progress")
    assert batch.obj["in_progress_at"] == first
    batch.fail("invalid_input", "why")
    assert batch.status == "failed" and batch.obj["errors"]["data"][0]["message"] == "why"


def test_request_counts_are_the_requests_of_chunks_done_and_failed():
    # 3 chunks over 10 requests: [0, 4), [4, 7), [7, 10); requests 1 and 8 refused
    starts = np.array([0, 4, 7])
    refused = [8, 1]
    # none done yet: only the refused have failed
    nothing = np.zeros(3, bool)
    assert batch_counts.counts_of(starts, 10, refused, nothing, {}) == (0, 2)
    # chunk 0 done (3 of its requests were served), chunk 2 failed (2 served requests)
    done = np.array([True, False, False])
    assert batch_counts.counts_of(starts, 10, refused, done, {2: "ValueError: bad"}) == (3, 4)
    # a chunk skipped because the batch was cancelled did not fail: it never ran
    cancelled = {1: "JobCancelled: job j was cancelled", 2: "ValueError: bad"}
    assert batch_counts.counts_of(starts, 10, refused, done, cancelled) == (3, 4)
    # every chunk done: every request not refused
    assert batch_counts.counts_of(starts, 10, refused, np.ones(3, bool), {}) == (8, 2)
