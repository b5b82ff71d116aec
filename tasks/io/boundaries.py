"""Where the records of a line-format file end, block by block: the scan's inner loop.

A file is streamed in blocks (``tasks.io.sources.stream``); numpy finds the newlines of
each block. Per format:

- ``txt``: every line is a record (a blank line is the row ``""``).
- ``jsonl``: blank and whitespace-only lines (JSON whitespace: space, tab, CR) are not
  records, as every jsonl reader treats them; each record carries its 0-based line
  number, so errors name the right line.
- ``csv``: a newline ends a record when the quotes before it pair up (RFC 4180). A file
  whose quotes do not pair up has a quote that is never closed: an :class:`InputError`
  naming the line where that quote opened, instead of the rest of the file folded into
  one cell.

Each :class:`Block` hands back its bytes too, so the caller can hash the chunks it cuts
without reading the file twice (``tasks.io.pinning``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.contract.errors import InputError
from tasks.io import sources

#: Bytes that make a jsonl line blank (JSON's whitespace; the newline ends the line).
BLANK = b" \t\r"
_BLANK_CODES = np.frombuffer(BLANK + b"\n", dtype=np.uint8)


@dataclass
class Block:
    """One streamed block: its absolute offset, its bytes, and the records ending in it.

    ``ends`` are absolute offsets just past each record's newline (a last record
    without one ends at the file's end, in a final block of no bytes); ``lines`` (jsonl
    only) is each record's 0-based line number in the file."""

    offset: int
    data: bytes
    ends: np.ndarray
    lines: np.ndarray | None = None


def blocks(url: str, fmt: str, pin: dict[str, Any] | None = None) -> Iterator[Block]:
    """The blocks of ``url`` with the records that end in each (module docstring);
    ``pin``: read the S3 object the snapshot names (``tasks.io.pinning``)."""
    stream = sources.stream(url, pin=pin)
    if pin is not None and "size" in pin:  # bytes appended since the snapshot are no part
        stream = upto(stream, int(pin["size"]))
    if fmt == "csv":
        yield from _csv_blocks(url, stream)
    elif fmt == "jsonl":
        yield from _jsonl_blocks(stream)
    else:
        yield from _txt_blocks(stream)


def upto(stream: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of ``stream``."""
    seen = 0
    for data in stream:
        if seen + len(data) > size:
            data = data[: size - seen]
        if data:
            yield data
        seen += len(data)
        if seen >= size:
            return


def record_ends(url: str, quoted: bool) -> Iterator[np.ndarray]:
    """Absolute end offsets of the records of a txt (or, ``quoted``, csv) file, per block."""
    for block in blocks(url, "csv" if quoted else "txt"):
        if block.ends.size:
            yield block.ends


def _txt_blocks(stream: Iterator[bytes]) -> Iterator[Block]:
    offset, last = 0, 0
    for data in stream:
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        if newlines.size:
            last = offset + int(newlines[-1]) + 1
        yield Block(offset, data, newlines.astype(np.int64) + (offset + 1))
        offset += len(data)
    if offset > last:
        yield Block(offset, b"", np.array([offset], dtype=np.int64))


def _csv_blocks(url: str, stream: Iterator[bytes]) -> Iterator[Block]:
    offset, quotes, last = 0, 0, 0
    lines_before, quote_line = 0, 0
    for data in stream:
        arr = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        at = np.flatnonzero(arr == 34)
        if at.size:
            quote_line = lines_before + int(np.searchsorted(newlines, at[-1])) + 1
        lines_before += newlines.size
        before = np.searchsorted(at, newlines) + quotes
        quotes += at.size
        newlines = newlines[(before & 1) == 0]
        if newlines.size:
            last = offset + int(newlines[-1]) + 1
        yield Block(offset, data, newlines.astype(np.int64) + (offset + 1))
        offset += len(data)
    if quotes & 1:
        raise InputError(
            f"{url}: line {quote_line}: a quote opened here is never closed "
            f'(unclosed CSV quote); close it or escape it as ""'
        )
    if offset > last:
        yield Block(offset, b"", np.array([offset], dtype=np.int64))


def _jsonl_blocks(stream: Iterator[bytes]) -> Iterator[Block]:
    """Records of a jsonl file: its non-blank lines, each with its line number."""
    offset, line_no = 0, 0
    prev_byte = 10  # the byte before the block (a newline: the file starts a line)
    tail_blank = True  # the bytes since the last newline are all blank
    for data in stream:
        arr = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        if newlines.size:
            # A line can be blank only if the byte before its newline is blank (or a
            # newline): a cheap gather; only those few lines are looked at whole.
            before = np.where(newlines > 0, arr[np.maximum(newlines - 1, 0)], prev_byte)
            blank = np.isin(before, _BLANK_CODES)
            for k in np.flatnonzero(blank):
                end = int(newlines[k])
                if k == 0:
                    blank[k] = tail_blank and not data[:end].strip(BLANK)
                else:
                    blank[k] = not data[int(newlines[k - 1]) + 1 : end].strip(BLANK)
            keep = ~blank
            lines = np.arange(line_no, line_no + newlines.size, dtype=np.int64)[keep]
            ends = newlines[keep].astype(np.int64) + (offset + 1)
            tail = data[int(newlines[-1]) + 1 :]
            tail_blank = not tail.strip(BLANK)
            line_no += newlines.size
        else:
            lines = ends = np.empty(0, dtype=np.int64)
            tail_blank = tail_blank and not data.strip(BLANK)
        if data:
            prev_byte = data[-1]
        yield Block(offset, data, ends, lines)
        offset += len(data)
    if not tail_blank:
        end = np.array([offset], dtype=np.int64)
        yield Block(offset, b"", end, np.array([line_no], dtype=np.int64))
