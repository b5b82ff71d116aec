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
from collections.abc import Iterator
from typing import Any

import numpy as np

from tasks.contract.errors import InputError
from tasks.io import openai, rows, sources
from tasks.io.plan import CHUNK_DTYPE, DEFAULT_CHUNK_ROWS, DEFAULT_MAX_BYTES, HEAD_BYTES, Plan
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

    def ends(self, ends: np.ndarray) -> None:
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
                self.file_rows,
            )
            self.count += 1
            self.total_rows += self.pending
            self.file_rows += self.pending
            self.start, self.pending = self.last_end, 0

    def array(self) -> np.ndarray:
        return self.out[: self.count].copy()


def record_ends(url: str, quoted: bool) -> Iterator[np.ndarray]:
    """Absolute end offsets (just past the newline) of the records of a file, per block;
    a last record without a newline ends at the file's end."""
    offset, quotes, last = 0, 0, 0
    for block in sources.stream(url):
        arr = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        if quoted:
            at = np.flatnonzero(arr == 34)
            before = np.searchsorted(at, newlines) + quotes
            newlines = newlines[(before & 1) == 0]
            quotes += at.size
        if newlines.size:
            last = offset + int(newlines[-1]) + 1
            yield newlines.astype(np.int64) + (offset + 1)
        offset += len(block)
    if offset > last:
        yield np.array([offset], dtype=np.int64)


def first_line(url: str, size: int) -> bytes:
    head = sources.read_range(url, 0, min(size, HEAD_BYTES))
    return head.split(b"\n", 1)[0].removeprefix(rows.BOM).rstrip(b"\r")


def plan(
    files: list[InputFile],
    text_field: str | None = None,
    id_field: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    model: str | None = None,
) -> Plan:
    """Scan ``files`` (one format) into a :class:`Plan`. For OpenAI input, ``model`` is
    the model given on the command line (requests may then name any)."""
    if chunk_rows < 1 or max_bytes < 1:
        raise InputError("chunk rows and chunk bytes must be positive")
    fmt = files[0].format
    if fmt == "jsonl" and openai.looks_like_openai(first_line(files[0].url, files[0].size)):
        fmt = "openai"
    if fmt == "parquet":
        return _plan_parquet(files, text_field, id_field, chunk_rows)
    if fmt == "openai":
        return plan_openai(files, chunk_rows, max_bytes, model)
    cutter = _Cutter(chunk_rows, max_bytes)
    meta: list[dict[str, Any]] = []
    chosen_text, chosen_id = text_field or "text", id_field
    for index, f in enumerate(files):
        entry: dict[str, Any] = {"url": f.url, "size": f.size}
        data_start = 0
        ends_iter = record_ends(f.url, quoted=fmt == "csv")
        if fmt == "csv":
            header_end = _csv_header_end(ends_iter, f.url)
            columns = rows.csv_header(sources.read_range(f.url, 0, int(header_end[0])), f.url)
            if text_field is None and "text" not in columns and len(columns) == 1:
                chosen_text = columns[0]
            if chosen_text not in columns:
                raise InputError(f"{f.url}: no column {chosen_text!r}; columns: {columns}")
            chosen_id = rows.pick_id_field(columns, id_field, f.url) if index == 0 else chosen_id
            if chosen_id is not None and chosen_id not in columns:
                raise InputError(f"{f.url}: no column {chosen_id!r}; columns: {columns}")
            entry["columns"] = columns
            data_start = int(header_end[0])
            ends_iter = _rest(header_end[1:], ends_iter)
        elif fmt == "jsonl" and index == 0:
            chosen_id = _jsonl_id_field(f, chosen_text, id_field)
        cutter.file(index, data_start)
        for ends in ends_iter:
            cutter.ends(ends)
        cutter.cut()
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


def _csv_header_end(ends_iter: Iterator[np.ndarray], url: str) -> np.ndarray:
    for ends in ends_iter:
        if ends.size:
            return ends
    raise InputError(f"{url}: the CSV file is empty")


def _rest(first: np.ndarray, more: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from more


def _jsonl_id_field(f: InputFile, text_field: str, asked: str | None) -> str | None:
    """The id field of a jsonl input, from its first record (which must hold the text)."""
    line = first_line(f.url, f.size)
    if not line.strip():
        return asked
    rows.parse_jsonl(line, f.url, 1, text_field, None)  # raises naming what is wrong
    record = json.loads(line)
    return rows.pick_id_field(set(record), asked, f.url)


def _plan_parquet(
    files: list[InputFile], text_field: str | None, id_field: str | None, chunk_rows: int
) -> Plan:
    import pyarrow.parquet as pq

    out: list[tuple[int, int, int, int, int, int]] = []
    total = 0
    column, chosen_id = text_field or "text", id_field
    meta = []
    for index, f in enumerate(files):
        with sources.open_seekable(f.url, f.size) as fh:
            pf = pq.ParquetFile(fh)
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
                    out.append((index, e - s, s, e, total, s))
                    total += e - s
                start += n
        meta.append({"url": f.url, "size": f.size})
    if not out:
        raise InputError(f"{files[0].url}: the input holds no rows")
    return Plan(meta, "parquet", column, chosen_id, np.array(out, dtype=CHUNK_DTYPE), total)
