"""The plan of a dataset job: what the scan (``tasks.io.scan``) hands to Redis and workers."""

from __future__ import annotations

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
