"""Progress polling (short pauses first, so a small job is noticed as soon as it is
done) and the Gatherer: chunk results in input order, expired results, row-count
mismatches and NaN gaps."""

from __future__ import annotations

import uuid
from itertools import islice

import numpy as np
import pytest

from producers.gather import FIRST_POLL_S, Gatherer, poll_delays
from tasks.contract.errors import InvalidRequest
from tasks.contract.wire import pack_embeddings
from tasks.jobs.jobstore import JobRecord, chunk_task_id


def test_poll_pauses_grow_from_the_first_up_to_the_cap() -> None:
    delays = list(islice(poll_delays(0.1, first=0.01), 9))

    assert delays == pytest.approx(
        [0.01, 0.015, 0.0225, 0.03375, 0.050625, 0.0759375, 0.1, 0.1, 0.1]
    )


def test_poll_pauses_start_at_the_module_default() -> None:
    assert next(poll_delays(1.0)) == FIRST_POLL_S < 0.1


def test_a_first_pause_above_the_cap_is_the_cap() -> None:
    assert list(islice(poll_delays(0.05, first=0.2), 3)) == [0.05, 0.05, 0.05]


# -- Gatherer: chunk results in the real Redis result backend (the session's server; no
# worker: the tests store what a worker would) --

ROWS = 7
DIM = 3


@pytest.fixture
def backend_app(redis_server):
    from tasks.app import make_app

    return make_app(redis_server.url)


def record() -> JobRecord:
    # the producer sorted 7 rows by length: chunk 0 holds rows 4, 0, 6; chunk 1 rows 2, 5;
    # chunk 2 rows 1, 3
    order = np.array([4, 0, 6, 2, 5, 1, 3], dtype="<i4")
    bounds = np.array([0, 3, 5, 7], dtype="<i4")
    return JobRecord(f"job-{uuid.uuid4().hex[:8]}", "m", "", ROWS, 3, 0.0, order, bounds)


def row_vector(row: int) -> np.ndarray:
    return np.full(DIM, float(row) + 0.5, dtype=np.float32)


def store_chunk(app, rec: JobRecord, index: int, rows: np.ndarray | None = None) -> None:
    rows = rec.chunk_rows(index) if rows is None else rows
    vectors = np.stack([row_vector(int(r)) for r in rows])
    app.backend.store_result(chunk_task_id(rec.id, index), pack_embeddings(vectors, "m"), "SUCCESS")


def test_chunks_land_in_input_order_as_they_come(backend_app) -> None:
    rec = record()
    gatherer = Gatherer(backend_app, rec)
    store_chunk(backend_app, rec, 2)
    assert gatherer.fetch([2]) == 1
    store_chunk(backend_app, rec, 0)
    store_chunk(backend_app, rec, 1)
    assert gatherer.fetch([0, 1, 2]) == 2  # chunk 2 is not fetched twice
    expected = np.stack([row_vector(r) for r in range(ROWS)])
    np.testing.assert_array_equal(gatherer.array(), expected)
    assert gatherer.array().dtype == np.float32


def test_an_expired_result_is_an_error_naming_job_and_chunk(backend_app) -> None:
    # Given chunk 1 done, but its result gone from the backend (expired after the TTL)
    rec = record()
    store_chunk(backend_app, rec, 0)
    gatherer = Gatherer(backend_app, rec)
    with pytest.raises(InvalidRequest, match=rf"job {rec.id}: the result of chunk 1 has expired"):
        gatherer.fetch([0, 1])
    assert 1 not in gatherer.fetched


def test_a_chunk_with_the_wrong_row_count_is_refused(backend_app) -> None:
    # Given chunk 0 (3 rows) answered with 2 vectors
    rec = record()
    store_chunk(backend_app, rec, 0, rows=np.array([4, 0]))
    gatherer = Gatherer(backend_app, rec)
    with pytest.raises(InvalidRequest, match="chunk 0 returned 2 rows, expected 3"):
        gatherer.fetch([0])
    assert gatherer.fetched == set()


def test_failed_chunks_leave_nan_gaps_and_the_rest_is_in_place(backend_app) -> None:
    # Given chunks 0 and 2 done, chunk 1 (rows 2 and 5) failed
    rec = record()
    store_chunk(backend_app, rec, 0)
    store_chunk(backend_app, rec, 2)
    gatherer = Gatherer(backend_app, rec)
    gatherer.fetch([0, 2])
    out = gatherer.array_with_gaps([1])
    assert out.shape == (ROWS, DIM)
    gaps = np.isnan(out).all(axis=1)
    assert gaps.tolist() == [r in (2, 5) for r in range(ROWS)]
    for row in (0, 1, 3, 4, 6):
        np.testing.assert_array_equal(out[row], row_vector(row))


def test_nothing_fetched_is_an_empty_matrix_and_the_output_is_allocated_once(
    backend_app,
) -> None:
    rec = record()
    allocations = []

    def allocate(n: int, dim: int) -> np.ndarray:
        allocations.append((n, dim))
        return np.zeros((n, dim), dtype=np.float32)

    gatherer = Gatherer(backend_app, rec, allocate=allocate)
    assert gatherer.array().shape == (ROWS, 0)
    for index in range(3):
        store_chunk(backend_app, rec, index)
        gatherer.fetch([index])
    assert allocations == [(ROWS, DIM)]
