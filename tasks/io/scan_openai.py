"""Planning an OpenAI Batch file: every request judged (``tasks.io.openai.judge``), chunks
cut on request boundaries, refused requests kept for the output's error lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tasks.contract.errors import InputError
from tasks.io import openai, rows, sources
from tasks.io.plan import CHUNK_DTYPE, Plan
from tasks.io.sources import InputFile


def _lines(url: str) -> Iterator[tuple[int, bytes]]:
    """``(end offset, line)`` of each line of a file, streamed."""
    offset, rest = 0, b""
    for block in sources.stream(url):
        data = rest + block
        parts = data.split(b"\n")
        rest = parts.pop()
        for line in parts:
            offset += len(line) + 1
            yield offset, line
    if rest:
        yield offset + len(rest), rest


def plan_openai(files: list[InputFile], chunk_rows: int, max_bytes: int, model: str | None) -> Plan:
    out: list[tuple[int, int, int, int, int, int]] = []
    errors: list[dict[str, Any]] = []
    meta: list[dict[str, Any]] = []
    judge_model, request, total = None, 0, 0
    judge_dimensions: int | None = None  # set by the first served request
    for index, f in enumerate(files):
        start, pending, first_request, last_end = 0, 0, request, 0
        for end, raw in _lines(f.url):
            if pending and (pending >= chunk_rows or end - start > max_bytes):
                out.append((index, pending, start, last_end, total, first_request))
                total += pending
                start, pending, first_request = last_end, 0, request
            last_end = end
            if not raw.strip():
                continue
            judged = openai.judge(rows.decode(raw, f.url, 1), judge_model, judge_dimensions)
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
            out.append((index, pending, start, last_end, total, first_request))
            total += pending
        elif last_end > start and out and out[-1][0] == index:
            prev = out.pop()  # trailing refused requests join the last chunk
            out.append((*prev[:3], last_end, *prev[4:]))
        meta.append({"url": f.url, "size": f.size})
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
