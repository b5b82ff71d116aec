"""Pieces of a batch's life that need no fleet: counting requests, fixed output ids."""

from __future__ import annotations

import io

from gateway import batch_runs, filestore
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
