"""Gathering a job's chunk results into one matrix in input order, as they finish.

Results are read straight from the Celery result backend with one MGET per batch of
chunks; each chunk's rows are scattered to their input positions, so the output can
be a memory-mapped .npy file and a big job never sits twice in memory. A
``long_text=windows`` job (a result row per window) is assembled by
``producers.windows`` once every chunk is back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
from celery import Celery

from producers.windows import WindowPieces
from tasks.contract.errors import InvalidRequest
from tasks.contract.wire import unpack_columns, unpack_embeddings
from tasks.jobs import jobstore

#: Chunk results fetched per round trip.
FETCH_BATCH = 64
#: First pause between progress polls (seconds); pauses grow by :data:`POLL_GROWTH` up
#: to the client's poll interval. A one-text job is done in ~25 ms on 2 cores: polling
#: at a fixed 100 ms made its latency ~104 ms (p50); growing pauses from a few ms make
#: it ~30-45 ms (bench/latency.py), for ~10 more Redis round trips in a job's first
#: second.
FIRST_POLL_S = 0.002
#: Factor between one pause and the next.
POLL_GROWTH = 1.5


def poll_delays(cap: float, first: float | None = None) -> Iterator[float]:
    """Pauses between polls: ``first`` (default :data:`FIRST_POLL_S`), growing by
    :data:`POLL_GROWTH` up to ``cap``, then ``cap`` for ever."""
    delay = min(cap, FIRST_POLL_S if first is None else first)
    while True:
        yield delay
        delay = min(cap, delay * POLL_GROWTH)


def zeroed(n: int, dim: int) -> np.ndarray:
    """An (n, dim) float32 array of zeros, its pages touched in order.

    Chunks land on rows scattered over the whole output (the plan sorts by length). On a
    fresh ``np.zeros`` (calloc: untouched pages) every scattered row took a page fault:
    ~10 us a row on the bench machine vs ~0.8 us once the pages are written in order
    (bench/fleet_cost.py).
    """
    out = np.empty((n, dim), dtype=np.float32)
    out.fill(0.0)
    return out


class Gatherer:
    """Collects chunk results of one job into an (n, dim) float32 array."""

    def __init__(
        self,
        app: Celery,
        record: jobstore.JobRecord,
        allocate: Callable[[int, int], np.ndarray] | None = None,
        windows: bool = False,
    ) -> None:
        self.app = app
        self.record = record
        #: Makes the (n, dim) output once dim is known; a memmap for streamed writes.
        self.allocate = allocate or zeroed
        self.out: np.ndarray | None = None
        #: Per-row columns the results carry (``tokens``, ``truncated``), input order;
        #: under ``windows``, per window and with ``row``, once assembled.
        self.columns: dict[str, np.ndarray] = {}
        self.fetched: set[int] = set()
        #: ``long_text=windows``: the chunks' windows, assembled by :meth:`array`.
        self.windows = WindowPieces(record.id, record.n) if windows else None

    def fetch(self, done: Iterable[int]) -> int:
        """Fetch the results of finished chunks not fetched yet; returns how many."""
        todo = sorted(set(done) - self.fetched)
        backend = self.app.backend
        for start in range(0, len(todo), FETCH_BATCH):
            batch = todo[start : start + FETCH_BATCH]
            keys = [
                backend.get_key_for_task(jobstore.chunk_task_id(self.record.id, i)) for i in batch
            ]
            for index, raw in zip(batch, backend.mget(keys), strict=True):
                if raw is None:
                    raise InvalidRequest(
                        f"job {self.record.id}: the result of chunk {index} has expired or is missing"
                    )
                meta = backend.decode_result(raw)
                result = meta["result"]
                self._place(index, unpack_embeddings(result), unpack_columns(result))
        return len(todo)

    def _place(
        self, index: int, vectors: np.ndarray, columns: dict[str, np.ndarray] | None = None
    ) -> None:
        rows = self.record.chunk_rows(index)
        if self.windows is not None:
            self.windows.add(index, rows, vectors, columns or {})
            self.fetched.add(index)
            return
        if vectors.shape[0] != rows.size:
            raise InvalidRequest(
                f"job {self.record.id}: chunk {index} returned {vectors.shape[0]} rows, "
                f"expected {rows.size}"
            )
        if self.out is None and vectors.dtype != np.float32:  # quantized: 4-32x smaller
            self.out = np.zeros((self.record.n, vectors.shape[1]), dtype=vectors.dtype)
        if self.out is None:
            self.out = self.allocate(self.record.n, vectors.shape[1])
        self.out[rows] = vectors
        for name, values in (columns or {}).items():
            if name not in self.columns:
                self.columns[name] = np.zeros(self.record.n, dtype=values.dtype)
            self.columns[name][rows] = values
        self.fetched.add(index)

    def array(self) -> np.ndarray:
        """The gathered matrix (all zeros where chunks are missing; under ``windows``,
        the windows in input order, a NaN placeholder for a row not done)."""
        if self.windows is not None:
            if self.out is None:
                self.out, self.columns = self.windows.assemble(self.allocate)
            return self.out
        if self.out is None:
            return np.zeros((self.record.n, 0), dtype=np.float32)
        return self.out

    def array_with_gaps(self, failed: Iterable[int]) -> np.ndarray:
        """The gathered matrix with the rows of ``failed`` chunks set to NaN."""
        out = self.array()
        # quantized rows have no NaN: failed rows stay 0; windows: NaN placeholders already
        if out.dtype != np.float32 or self.windows is not None:
            return out
        for index in failed:
            out[self.record.chunk_rows(index)] = np.nan
        return out
