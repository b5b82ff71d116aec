"""Planning a dataset job: one pass over the input that cuts it into ranges.

The scan reads each file once, streamed in blocks (memory does not grow with the
input), and finds record boundaries with numpy: newlines for .txt/.jsonl, newlines
outside quotes for .csv (RFC 4180: a newline ends a record when the quotes before it
pair up). Every ``chunk_rows`` records, or sooner when ``max_bytes`` would be passed,
it records a chunk: ``(file, rows, start, stop, first_row, first_record)`` where
``start``/``stop`` are byte offsets (rows within the file for parquet, read by row
group from the footer alone). Workers read their own range; no text travels on the
queue. OpenAI batch files are judged request by request (``tasks.io.openai``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tasks.contract.errors import InputError
from tasks.io import boundaries, openai, pinning, rows, sniff, sources
from tasks.io.boundaries import record_ends
from tasks.io.plan import CHUNK_DTYPE, DEFAULT_CHUNK_ROWS, DEFAULT_MAX_BYTES, Plan
from tasks.io.scan_openai import plan_openai
from tasks.io.sources import InputFile

__all__ = ["CHUNK_DTYPE", "Plan", "plan", "record_ends"]


class _Cutter:
    """Accumulates record ends into chunks of at most ``chunk_rows`` rows and
    ``max_bytes`` bytes."""

    def __init__(self, chunk_rows: int, max_bytes: int) -> None:
        self.chunk_rows, self.max_bytes = chunk_rows, max_bytes
        # 40 bytes a chunk in a growing array (a list of tuples would take ~4x that)
        self.out = np.empty(1024, dtype=CHUNK_DTYPE)
        self.count = 0
        self.total_rows = 0

    def file(self, index: int, data_start: int) -> None:
        self.index, self.start, self.last_end, self.pending = index, data_start, data_start, 0
        self.file_rows = 0
        self.start_line = self.next_line = 0  # lines (jsonl) or rows within the file

    def ends(self, ends: np.ndarray, lines: np.ndarray | None = None) -> None:
        """Take records ending at ``ends`` (``lines``: their line numbers, when blank
        lines are not records)."""
        i, n = 0, ends.size
        while i < n:
            last_by_rows = min(i + self.chunk_rows - self.pending, n) - 1
            last_by_bytes = int(np.searchsorted(ends, self.start + self.max_bytes, "right")) - 1
            if last_by_bytes < i:
                if self.pending:
                    self.cut()
                    continue
                last_by_bytes = i  # one record bigger than max_bytes: a chunk of its own
            take = min(last_by_rows, last_by_bytes)
            self.pending += take - i + 1
            self.last_end = int(ends[take])
            self.next_line = (
                int(lines[take]) + 1 if lines is not None else self.file_rows + self.pending
            )
            i = take + 1
            if self.pending >= self.chunk_rows or (take == last_by_bytes and take < n - 1):
                self.cut()

    def cut(self) -> None:
        if self.pending:
            first = self.total_rows
            if self.count == self.out.size:
                self.out = np.resize(self.out, 2 * self.out.size)
            self.out[self.count] = (
                self.index,
                self.pending,
                self.start,
                self.last_end,
                first,
                self.start_line,
                0,
            )
            self.count += 1
            self.total_rows += self.pending
            self.file_rows += self.pending
            self.start, self.pending = self.last_end, 0
            self.start_line = self.next_line

    def array(self) -> np.ndarray:
        return self.out[: self.count].copy()


def first_line(url: str, size: int) -> bytes:
    """The first non-blank line of a file, however long (``tasks.io.sniff``)."""
    return sniff.first_line(url, size)


def plan(
    files: list[InputFile],
    text_field: str | None = None,
    id_field: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    model: str | None = None,
    hashing: bool = True,
) -> Plan:
    """Scan ``files`` (one format) into a :class:`Plan`, pinning each file (its snapshot
    and, unless ``hashing`` is off for the bench, each chunk's hash). For OpenAI input,
    ``model`` is the model given on the command line (requests may then name any)."""
    if chunk_rows < 1 or max_bytes < 1:
        raise InputError("chunk rows and chunk bytes must be positive")
    fmt = files[0].format
    if fmt == "jsonl" and openai.looks_like_openai(first_line(files[0].url, files[0].size)):
        fmt = "openai"
    if fmt == "parquet":
        return _plan_parquet(files, text_field, id_field, chunk_rows)
    if fmt == "openai":
        return plan_openai(files, chunk_rows, max_bytes, model, hashing)
    cutter = _Cutter(chunk_rows, max_bytes)
    meta: list[dict[str, Any]] = []
    chosen_text, chosen_id = text_field or "text", id_field
    for index, f in enumerate(files):
        entry = pinning.snapshot(f.url)
        data_start = 0
        if fmt == "csv":
            data_start, columns = sniff.csv_header(f.url, entry)
            if text_field is None and "text" not in columns and len(columns) == 1:
                chosen_text = columns[0]
            if chosen_text not in columns:
                raise InputError(f"{f.url}: no column {chosen_text!r}; columns: {columns}")
            chosen_id = rows.pick_id_field(columns, id_field, f.url) if index == 0 else chosen_id
            if chosen_id is not None and chosen_id not in columns:
                raise InputError(f"{f.url}: no column {chosen_id!r}; columns: {columns}")
            entry["columns"] = columns
        elif fmt == "jsonl" and index == 0:
            chosen_id = _jsonl_id_field(f, chosen_text, id_field)
        cutter.file(index, data_start)
        _cut_file(cutter, f.url, fmt, data_start, entry, hashing)
        meta.append(entry)
    chunks = cutter.array()
    if not chunks.size:
        raise InputError(f"{files[0].url}: the input holds no rows")
    return Plan(
        meta,
        fmt,
        chosen_text if fmt != "txt" else "",
        chosen_id if fmt != "txt" else None,
        chunks,
        cutter.total_rows,
    )


def _cut_file(
    cutter: _Cutter, url: str, fmt: str, data_start: int, pin: dict[str, Any], hashing: bool
) -> None:
    """Cut one file's records into chunks, hashing each chunk's bytes as they stream by
    (``hashing=False`` only for the bench's side-by-side figure)."""
    hasher = pinning.RangeHasher(data_start)
    end = data_start
    for block in boundaries.blocks(url, fmt, pin):
        before = cutter.count
        ends = block.ends
        if block.offset < data_start:  # the csv header is no record
            keep = ends > data_start
            ends = ends[keep]
            lines = None if block.lines is None else block.lines[keep]
        else:
            lines = block.lines
        cutter.ends(ends, lines)
        if hashing:
            _hash_new(cutter, hasher, block.offset, block.data, before)
        end = max(end, block.offset + len(block.data))
    if cutter.pending:  # trailing blank jsonl lines join the last chunk's range
        cutter.last_end = end
    before = cutter.count
    cutter.cut()
    if hashing:
        _hash_new(cutter, hasher, end, b"", before)


def _hash_new(
    cutter: _Cutter, hasher: pinning.RangeHasher, offset: int, data: bytes, before: int
) -> None:
    new = cutter.out[before : cutter.count]
    hashes = hasher.feed(offset, data, new["stop"].tolist())
    if hashes:
        cutter.out["hash"][before : cutter.count] = hashes


def _jsonl_id_field(f: InputFile, text_field: str, asked: str | None) -> str | None:
    """The id field of a jsonl input, from its first record (which must hold the text)."""
    line = first_line(f.url, f.size)
    if not line:
        return asked
    rows.parse_jsonl(line, f.url, 1, text_field, None)  # raises naming what is wrong
    record = json.loads(line)
    return rows.pick_id_field(set(record), asked, f.url)


def _plan_parquet(
    files: list[InputFile], text_field: str | None, id_field: str | None, chunk_rows: int
) -> Plan:

    out: list[tuple[int, int, int, int, int, int, int]] = []
    total = 0
    column, chosen_id = text_field or "text", id_field
    meta = []
    for index, f in enumerate(files):
        entry = pinning.snapshot(f.url)
        with sources.open_seekable(f.url, entry["size"], entry) as fh:
            pf = _parquet_file(fh, f.url)
            names = pf.schema_arrow.names
            if column not in names:
                raise InputError(f"{f.url}: no column {column!r}; columns: {names}")
            if index == 0:
                chosen_id = rows.pick_id_field(names, id_field, f.url)
            elif chosen_id is not None and chosen_id not in names:
                raise InputError(f"{f.url}: no column {chosen_id!r}; columns: {names}")
            start = 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                for s in range(start, start + n, chunk_rows):
                    e = min(start + n, s + chunk_rows)
                    out.append((index, e - s, s, e, total, s, 0))
                    total += e - s
                start += n
        entry["footer"] = pinning.footer_digest(f.url, entry["size"], entry)
        meta.append(entry)
    if not out:
        raise InputError(f"{files[0].url}: the input holds no rows")
    return Plan(meta, "parquet", column, chosen_id, np.array(out, dtype=CHUNK_DTYPE), total)


def _parquet_file(fh: Any, url: str) -> Any:
    """A ``pyarrow.parquet.ParquetFile``, or one line saying the file is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(fh)
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{url}: not a readable parquet file (truncated or corrupt): {reason}"
        ) from None
