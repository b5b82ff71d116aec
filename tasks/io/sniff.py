"""Looking at the first record of a file, whatever its length: format sniffing (is this
an OpenAI batch?) and the choice of the id field read what they need, not a fixed head.
"""

from __future__ import annotations

from typing import Any

from tasks.contract.errors import InputError
from tasks.io import boundaries, rows, sources
from tasks.io.boundaries import BLANK
from tasks.io.plan import HEAD_BYTES


def first_line(url: str, size: int, pin: dict[str, Any] | None = None) -> bytes:
    """The first non-blank line of a file, whole (without BOM, newline or CR); ``b""``
    when the file holds only blank lines. Reads 1 MiB, then twice as much each time."""
    start, step, pending, bom_checked = 0, HEAD_BYTES, b"", False
    while start < size:
        data = sources.read_range(url, start, min(size, start + step), pin)
        if not data:
            break
        start += len(data)
        if not bom_checked:
            data, bom_checked = data.removeprefix(rows.BOM), True
        searched = len(pending)
        pending += data
        while (cut := pending.find(b"\n", searched)) >= 0:
            line, pending, searched = pending[:cut], pending[cut + 1 :], 0
            if line.strip(BLANK):
                return line.rstrip(b"\r")
        step *= 2
    return pending.rstrip(b"\r") if pending.strip(BLANK) else b""


def csv_header(url: str, pin: dict[str, Any] | None = None) -> tuple[int, list[str]]:
    """Where a CSV file's header record ends, and its column names."""
    for block in boundaries.blocks(url, "csv", pin):
        if block.ends.size:
            end = int(block.ends[0])
            return end, rows.csv_header(sources.read_range(url, 0, end, pin), url)
    raise InputError(f"{url}: the CSV file is empty")
