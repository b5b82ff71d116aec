"""A list job's windows (``long_text=windows``) put back in input order.

Under ``windows`` a chunk result holds a row per window of its texts, each naming its
text by ``source_row`` (its index in the chunk: ``tasks.contract.wire``). A text's
windows all come back in one chunk, numbered 0, 1, ...; how many a text has is known
only once its chunk is back, so the pieces are kept as they arrive and assembled once:
every input row's windows in window order, rows in input order (row 0's windows first).
Beside the vectors, ``row`` (int64, the input row of each vector) and per window
``window``, ``char_start``, ``char_end``, ``tokens`` and ``truncated``.

An input row whose chunk failed or was never done (``wait(allow_failed=True)``, a
cancelled job) gets one placeholder: a NaN vector (0 for a quantized job), window 0,
characters 0..0, 0 tokens; so ``row`` still names every input row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tasks.contract.errors import InvalidRequest

#: The per-window columns that come back besides ``row`` (``source_row`` becomes ``row``).
WINDOW_COLUMNS = ("window", "char_start", "char_end", "tokens", "truncated")
#: Their dtypes in what a list job returns (char offsets as the dataset parts hold them).
COLUMN_TYPES = {
    "window": np.int32,
    "char_start": np.int64,
    "char_end": np.int64,
    "tokens": np.int32,
    "truncated": np.bool_,
}


class WindowPieces:
    """The chunk results of one ``long_text=windows`` list job of ``n`` input rows."""

    def __init__(self, job_id: str, n: int) -> None:
        self.job_id = job_id
        self.n = n
        self._pieces: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []

    def add(
        self,
        index: int,
        chunk_rows: np.ndarray,
        vectors: np.ndarray,
        columns: dict[str, np.ndarray],
    ) -> None:
        """Keep chunk ``index``'s windows; ``chunk_rows``: the input rows of its texts."""
        source = columns.get("source_row")
        missing = [c for c in WINDOW_COLUMNS if c not in columns]
        if source is None or missing:
            raise InvalidRequest(
                f"job {self.job_id}: chunk {index} did not return windows (no "
                f"{'source_row' if source is None else missing[0]} column): was it run "
                f"by a worker older than long_text=windows for list jobs?"
            )
        source = np.asarray(source, dtype=np.int64)
        if source.size and (source.min() < 0 or source.max() >= chunk_rows.size):
            raise InvalidRequest(
                f"job {self.job_id}: chunk {index} names texts outside its {chunk_rows.size} texts"
            )
        if source.size != vectors.shape[0]:
            raise InvalidRequest(
                f"job {self.job_id}: chunk {index} returned {vectors.shape[0]} vectors for "
                f"{source.size} windows"
            )
        kept = {name: columns[name] for name in WINDOW_COLUMNS}
        self._pieces.append((chunk_rows[source], vectors, kept))

    def assemble(
        self, allocate: Callable[[int, int], np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(vectors, columns)``: every window in input order (rows, then windows),
        ``columns["row"]`` the input row of each; pieces are dropped as they are placed.
        ``allocate(m, dim)`` makes the float32 output (a memory map, for a .npy file)."""
        counts = np.zeros(self.n, dtype=np.int64)
        for rows, _, _ in self._pieces:
            np.add.at(counts, rows, 1)
        empty = counts == 0  # rows of chunks not done: one placeholder each
        counts[empty] = 1
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        total = int(counts.sum())
        dim, dtype = 0, np.dtype(np.float32)
        if self._pieces:
            dim, dtype = self._pieces[0][1].shape[1], self._pieces[0][1].dtype
        out = allocate(total, dim) if dtype == np.float32 else np.zeros((total, dim), dtype)
        columns = {"row": np.repeat(np.arange(self.n, dtype=np.int64), counts)}
        for name in WINDOW_COLUMNS:
            columns[name] = np.zeros(total, dtype=COLUMN_TYPES[name])
        if dtype == np.float32:
            out[starts[empty]] = np.nan
        while self._pieces:
            rows, vectors, kept = self._pieces.pop()
            window = np.asarray(kept["window"], dtype=np.int64)
            if window.size and (window.min() < 0 or np.any(window >= counts[rows])):
                raise InvalidRequest(f"job {self.job_id}: a chunk numbered its windows wrongly")
            at = starts[rows] + window
            out[at] = vectors
            for name in WINDOW_COLUMNS:
                columns[name][at] = kept[name]
        return out, columns
