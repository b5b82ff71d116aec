"""Pieces of a batch's life that need no fleet: counting requests, fixed output ids."""

from __future__ import annotations

import io
import uuid

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


class _Job:
    """What ``start`` and ``cancel`` ask of a queued dataset job: its id and cancel."""

    def __init__(self, job_id: str) -> None:
        self.id = job_id
        self.cancels: list[bool] = []

    def cancel(self, keep_claim: bool = False) -> None:
        self.cancels.append(keep_claim)


class _Client:
    """The producer client as the batch runs use it, on the suite's real Redis; its
    ``submit_dataset`` runs ``meanwhile`` (another gateway's request) before it returns."""

    def __init__(self, redis, job: _Job, meanwhile=None) -> None:
        self.redis, self._job, self._meanwhile = redis, job, meanwhile

    def submit_dataset(self, *args, **kwargs) -> _Job:
        if self._meanwhile:
            self._meanwhile()
        return self._job

    def job(self, job_id: str) -> _Job:
        assert job_id == self._job.id
        return self._job


def _validating(redis, store) -> BatchRecord:
    from gateway import batch_store

    store.save("file-in.jsonl", io.BytesIO(b'{"custom_id": "a"}\n{"custom_id": "b"}\n'))
    batch = BatchRecord(
        new_object(f"batch_{uuid.uuid4().hex}", "file-in", "/v1/embeddings", "24h", None)
    )
    batch_store.save(redis, batch)
    return batch


def test_a_cancel_while_the_job_is_queued_cancels_the_job(redis_server, tmp_path):
    from gateway import batch_store

    redis = redis_server.client()
    store = filestore.FileStore(str(tmp_path))
    batch = _validating(redis, store)
    job = _Job("job-1")
    # Given a cancel (another request) that lands while the batch's job is being queued
    client = _Client(
        redis, job, meanwhile=lambda: batch_runs.cancel(client, batch_store.load(redis, batch.id))
    )
    # When the queueing ends
    batch_runs.start(client, store, batch)
    # Then the batch stays cancelling, knows its job, and the job was cancelled
    saved = batch_store.load(redis, batch.id)
    assert (saved.status, saved.job) == ("cancelling", "job-1")
    assert saved.obj["request_counts"]["total"] == 2
    assert job.cancels == [True]  # keeping its claim: what completed is kept


def test_a_cancel_after_the_job_is_queued_cancels_it_once(redis_server, tmp_path):
    from gateway import batch_store

    redis = redis_server.client()
    store = filestore.FileStore(str(tmp_path))
    batch = _validating(redis, store)
    job = _Job("job-2")
    client = _Client(redis, job)
    batch_runs.start(client, store, batch)
    assert batch_store.load(redis, batch.id).status == "in_progress" and job.cancels == []
    batch_runs.cancel(client, batch_store.load(redis, batch.id))
    saved = batch_store.load(redis, batch.id)
    assert (saved.status, saved.job, job.cancels) == ("cancelling", "job-2", [True])
