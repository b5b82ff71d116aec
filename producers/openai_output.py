"""Writing a finished OpenAI-format dataset job as an OpenAI Batch output file.

One line per request in input order: served requests carry their embeddings, refused
requests (judged at submit) and requests of chunks that failed carry ``error``. The
input is read again range by range and each part once, so memory holds one chunk.

A cancelled job is written ``partial``: the requests of chunks that never ran (not
done, or skipped as cancelled) get no line at all, as OpenAI leaves a cancelled batch's
unrun requests out of its files. An expired batch's are written as errors instead
(``unrun``: OpenAI's ``batch_expired``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tasks.contract.chunking import estimate_tokens
from tasks.io import parts, ranges
from tasks.jobs import datasets, jobstore


def write_openai_output(
    job: Any, path: str | Path, partial: bool = False, unrun: tuple[str, str] | None = None
) -> int:
    """Write job ``job`` (a finished :class:`DatasetJob`, or with ``partial`` a cancelled
    one) to ``path``; returns lines. With ``unrun`` (code, message), each request of a
    chunk that never ran gets an error line saying so instead of no line."""
    import pyarrow.parquet as pq

    redis = job.client.redis
    record = job.record
    plan = datasets.chunks(redis, job.id)
    done = datasets.bits(redis, job.id, "donebits", int(plan.size))
    refused = sorted(datasets.refused(redis, job.id), key=lambda e: e["request"])
    _, failed = jobstore.progress(redis, job.id)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    written, pending = 0, 0
    with tmp.open("w", encoding="utf-8") as out:

        def emit(line: dict[str, Any]) -> None:
            nonlocal written
            out.write(json.dumps(line) + "\n")
            written += 1

        def refused_before(request: int) -> None:
            nonlocal pending
            while pending < len(refused) and refused[pending]["request"] < request:
                e = refused[pending]
                emit(_error(e["custom_id"], e["code"], e["message"]))
                pending += 1

        for index, chunk in enumerate(plan):
            skipped = index not in failed or jobstore.skipped_as_cancelled(failed[index])
            never_ran = partial and not done[index] and skipped
            if never_ran and unrun is None:  # no line
                refused_before(int(chunk["first_record"]))  # in order, before the next
                continue
            file = datasets.file(redis, job.id, int(chunk["file"]))
            got = ranges.read_chunk(record.spec, file, chunk)
            requests = np.asarray(got.requests, dtype=np.int64)
            vectors = counted = None
            if never_ran:
                pass
            elif index not in failed:
                part = parts.read(record.output, parts.part_name(index))
                # one thread: a pool thread alive at exit aborted the CLI now and then
                table = pq.read_table(pa_buffer(part), use_threads=False)
                table = table.sort_by("row")
                vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
                counted = (
                    np.asarray(table.column("tokens").to_pylist(), dtype=np.int64)
                    if "tokens" in table.column_names
                    else None
                )
            starts = np.flatnonzero(np.r_[True, requests[1:] != requests[:-1]])
            ends = np.r_[starts[1:], requests.size]
            for s, e in zip(starts, ends, strict=True):
                request = int(requests[s])
                refused_before(request)
                custom_id = got.ids[s] if got.ids else None
                if never_ran and unrun is not None:
                    emit(_error(custom_id, *unrun))
                    continue
                if vectors is None:
                    emit(_error(custom_id, "chunk_failed", failed[index]))
                    continue
                tokens = (  # what the model saw; the estimate for parts that lack counts
                    int(counted[s:e].sum())
                    if counted is not None
                    else int(estimate_tokens(got.texts[s:e]).sum())
                )
                base64 = bool(got.base64[s]) if got.base64 else False
                emit(_response(custom_id, record.model, vectors[s:e], tokens, base64))
        refused_before(1 << 62)
    tmp.replace(path)
    return written


def pa_buffer(data: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(data)


def _response(
    custom_id: Any, model: str, vectors: np.ndarray, tokens: int, base64: bool
) -> dict[str, Any]:
    from tasks.io.openai import response_line

    return response_line(custom_id, model, vectors, tokens, base64)


def _error(custom_id: Any, code: str, message: str) -> dict[str, Any]:
    from tasks.io.openai import error_line

    return error_line(custom_id, code, message)
