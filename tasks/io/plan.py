"""The plan of a dataset job: what the scan (``tasks.io.scan``) hands to Redis and workers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: One chunk of the plan (48 bytes): file index, rows, range start/stop (bytes, or rows
#: within the file for parquet), first row over the whole input, first record (the
#: request number for OpenAI input, the first line for jsonl, else the first row within
#: the file), and the xxh3-64 hash of the range's bytes (``tasks.io.pinning``; 0 for
#: parquet, pinned by its footer).
CHUNK_DTYPE = np.dtype(
    [
        ("file", "<i4"),
        ("rows", "<i4"),
        ("start", "<i8"),
        ("stop", "<i8"),
        ("first_row", "<i8"),
        ("first_record", "<i8"),
        ("hash", "<u8"),
    ]
)
#: Rows of one chunk (one parquet part each).
DEFAULT_CHUNK_ROWS = 1024
#: Bytes of input one chunk may span (a single longer record is a chunk of its own).
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: Bytes read at the head of a file to look at its first record.
HEAD_BYTES = 1024 * 1024


@dataclass
class Plan:
    """What the scan found: the files, how to read them, and the chunks."""

    files: list[dict[str, Any]]  # {"url", "size", and "columns" for csv}
    format: str
    text_field: str
    id_field: str | None
    chunks: np.ndarray  # CHUNK_DTYPE
    rows: int
    openai_model: str | None = None  # the model OpenAI requests must name (None: any)
    #: The ``dimensions`` every OpenAI request must ask for (0: the model's; None: any).
    openai_dimensions: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # OpenAI requests refused


#: Chunks each live worker thread serving the model should get at least, so a small job
#: spreads over the whole fleet and its progress moves (``chunk_rows_for``).
CHUNKS_PER_THREAD = 4
#: The fleet's own cost of one dataset chunk, seconds (message, ranged read, part write,
#: marks): bench/fleet_cost.py measured 3.4 ms of wall time a part (500,000 rows in 489
#: parts, 1 worker x 2 threads) and 9.0 ms a chunk for list jobs; rounded up.
CHUNK_OVERHEAD_S = 0.01
#: A chunk holds at least this many times its overhead in model time (overhead <= 10%).
MIN_WORK_PER_OVERHEAD = 10
#: Rows of a chunk at least while the model's cost is unknown (no worker measured it).
MIN_CHUNK_ROWS = 32


def chunk_rows_for(rows: int, threads: int, seconds_per_text: float | None) -> int:
    """Rows a chunk of a ``rows``-row job: enough chunks for each of ``threads`` live
    worker threads to get :data:`CHUNKS_PER_THREAD`, none holding less than
    :data:`MIN_WORK_PER_OVERHEAD` x :data:`CHUNK_OVERHEAD_S` of model time (from the
    fleet's measured ``seconds_per_text``; :data:`MIN_CHUNK_ROWS` when unknown), and
    none more than :data:`DEFAULT_CHUNK_ROWS`."""
    spread = -(-max(1, rows) // (max(1, threads) * CHUNKS_PER_THREAD))
    if seconds_per_text is None or seconds_per_text <= 0:
        floor = MIN_CHUNK_ROWS
    else:
        floor = math.ceil(MIN_WORK_PER_OVERHEAD * CHUNK_OVERHEAD_S / seconds_per_text)
    return max(1, min(DEFAULT_CHUNK_ROWS, max(spread, floor)))
