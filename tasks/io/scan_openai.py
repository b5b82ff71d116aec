"""Planning an OpenAI Batch file: every request judged (``tasks.io.openai.judge``), chunks
cut on request boundaries, refused requests kept for the output's error lines.

A ``custom_id`` seen before is refused for its second (and later) occurrence: OpenAI
requires them unique, and one id served twice would give two output lines. Those
request numbers go with the file's entry (``skip``), so workers skip them too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tasks.contract.errors import InputError
from tasks.io import openai, pinning, rows, sources
from tasks.io.boundaries import upto
from tasks.io.plan import CHUNK_DTYPE, Plan
from tasks.io.sources import InputFile


def _lines(url: str, pin: dict[str, Any]) -> Iterator[tuple[int, bytes]]:
    """``(end offset, line)`` of each line of a file, streamed."""
    offset, rest = 0, b""
    for block in upto(sources.stream(url, pin=pin), int(pin["size"])):
        data = rest + block
        parts = data.split(b"\n")
        rest = parts.pop()
        for line in parts:
            offset += len(line) + 1
            yield offset, line
    if rest:
        yield offset + len(rest), rest


def plan_openai(
    files: list[InputFile],
    chunk_rows: int,
    max_bytes: int,
    model: str | None,
    hashing: bool = True,
) -> Plan:
    out: list[tuple[int, int, int, int, int, int, int]] = []
    errors: list[dict[str, Any]] = []
    meta: list[dict[str, Any]] = []
    judge_model, request, total = None, 0, 0
    judge_dimensions: int | None = None  # set by the first served request
    seen: dict[str, int] = {}
    for index, f in enumerate(files):
        entry = pinning.snapshot(f.url)
        skip: list[int] = []
        first_chunk = len(out)
        start, pending, first_request, last_end = 0, 0, request, 0
        for end, raw in _lines(f.url, entry):
            if pending and (pending >= chunk_rows or end - start > max_bytes):
                out.append((index, pending, start, last_end, total, first_request, 0))
                total += pending
                start, pending, first_request = last_end, 0, request
            last_end = end
            if not raw.strip():
                continue
            judged = openai.judge(rows.decode(raw, f.url, 1), judge_model, judge_dimensions)
            if judged.custom_id is not None and not judged.error:
                if judged.custom_id in seen:
                    judged = openai.duplicate(judged.custom_id, seen[judged.custom_id])
                    skip.append(request)
                else:
                    seen[judged.custom_id] = request
            if judged.error:
                errors.append(
                    {
                        "request": request,
                        "custom_id": judged.custom_id,
                        "code": judged.error[0],
                        "message": judged.error[1],
                    }
                )
            else:
                if model is None and judge_model is None and judged.model:
                    judge_model = judged.model
                if judge_dimensions is None:
                    judge_dimensions = judged.dimensions or 0
            pending += len(judged.texts)
            request += 1
        if pending:
            out.append((index, pending, start, last_end, total, first_request, 0))
            total += pending
        elif last_end > start and out and out[-1][0] == index:
            prev = out.pop()  # trailing refused requests join the last chunk
            out.append((*prev[:3], last_end, *prev[4:]))
        if skip:
            entry["skip"] = skip
        if hashing:
            _hash_chunks(f.url, entry, out, first_chunk)
        meta.append(entry)
    if not out:
        raise InputError(f"{files[0].url}: no request of the batch can be served")
    return Plan(
        meta,
        "openai",
        "",
        "custom_id",
        np.array(out, dtype=CHUNK_DTYPE),
        total,
        openai_model=judge_model if model is None else None,
        openai_dimensions=judge_dimensions,
        errors=errors,
    )


def _hash_chunks(
    url: str, pin: dict[str, Any], out: list[tuple[int, int, int, int, int, int, int]], first: int
) -> None:
    """Hash the byte ranges of chunks ``out[first:]`` (one more streamed read of the
    file, pinned to the object the first read saw)."""
    if first >= len(out):
        return
    hasher = pinning.RangeHasher(out[first][2])
    stops = [c[3] for c in out[first:]]
    hashes: list[int] = []
    offset, at = 0, 0
    for block in upto(sources.stream(url, pin=pin), int(pin["size"])):
        end = offset + len(block)
        last = at
        while last < len(stops) and stops[last] <= end:
            last += 1
        hashes += hasher.feed(offset, block, stops[at:last])
        at, offset = last, end
    hashes += hasher.feed(offset, b"", stops[at:])
    for i, value in enumerate(hashes):
        out[first + i] = (*out[first + i][:6], value)
