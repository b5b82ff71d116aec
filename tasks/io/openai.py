"""OpenAI Batch API files: request lines in, response lines out.

A request line: ``{"custom_id", "method": "POST", "url": "/v1/embeddings",
"body": {"model", "input": str | [str, ...], "dimensions"?, "encoding_format"?}}``. Each text of ``body.input`` is one row
of the job (``id`` = custom_id); a request that cannot be served (not JSON, another
url or method, an input that is not text, another model than the batch's) gets an
error line in the output, and the other requests go on. The scan (producer) and the
workers judge every line with the same :func:`judge`, so they agree on which requests
have rows. ``dimensions`` is one job option, so every served request of a file must ask
for the same size (that of the first served request); ``encoding_format: "base64"``
is per request (the output line then holds base64 of little-endian float32).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from tasks.contract.vectors import to_base64
from tasks.io.rows import Rows, decode, split_lines

URL = "/v1/embeddings"


@dataclass(frozen=True)
class Request:
    """One judged request line: its texts, or why it cannot be served."""

    custom_id: str | None
    model: str | None
    texts: list[str]
    error: tuple[str, str] | None = None  # (code, message)
    dimensions: int | None = None  # body.dimensions (None: the model's)
    base64: bool = False  # body.encoding_format == "base64"


def looks_like_openai(first_line: bytes) -> bool:
    """True when a jsonl file's first line is an OpenAI Batch request."""
    try:
        record = json.loads(first_line)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and "custom_id" in record and "body" in record


def judge(line: str, batch_model: str | None, batch_dimensions: int | None = None) -> Request:
    """Parse one request line; ``batch_model`` (when known) is the model every request
    must name, ``batch_dimensions`` (when known; 0 for the model's own) the size every
    request must ask for."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return Request(None, None, [], ("invalid_json", f"not JSON: {exc.msg}"))
    if not isinstance(record, dict):
        return Request(None, None, [], ("invalid_request", "a request must be a JSON object"))
    custom_id = record.get("custom_id")
    custom_id = custom_id if isinstance(custom_id, str) else None
    if custom_id is None:
        return _bad(None, "custom_id must be a string")
    if record.get("method", "POST") != "POST":
        return _bad(custom_id, f"method must be POST, got {record.get('method')!r}")
    if record.get("url", URL) != URL:
        return _bad(custom_id, f"url must be {URL}, got {record.get('url')!r}")
    body = record.get("body")
    if not isinstance(body, dict):
        return _bad(custom_id, "body must be an object")
    model = body.get("model")
    if batch_model is not None and model not in (None, batch_model):
        return _bad(custom_id, f"model {model!r} differs from the batch's model {batch_model!r}")
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts:
        return _bad(custom_id, "input must be a string or a non-empty list of strings")
    for text in texts:
        if not isinstance(text, str):
            return _bad(custom_id, f"input holds {type(text).__name__}, not text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _bad(custom_id, "input holds a lone surrogate (not valid Unicode)")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions <= 0
    ):
        return _bad(custom_id, f"dimensions must be a positive integer, got {dimensions!r}")
    if batch_dimensions is not None and (dimensions or 0) != batch_dimensions:
        return _bad(
            custom_id,
            f"dimensions {dimensions} differs from the batch's "
            f"{batch_dimensions or None}: send one batch file per size",
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return _bad(custom_id, f"encoding_format must be 'float' or 'base64', got {encoding!r}")
    return Request(
        custom_id,
        model if isinstance(model, str) else None,
        texts,
        dimensions=dimensions,
        base64=encoding == "base64",
    )


def duplicate(custom_id: str, first: int) -> Request:
    """The refusal of a request whose custom_id an earlier request (number ``first``,
    0-based) already holds."""
    return _bad(custom_id, f"duplicate custom_id {custom_id!r} (request {first + 1} has it)")


def _bad(custom_id: str | None, message: str) -> Request:
    return Request(custom_id, None, [], ("invalid_request", message))


def parse(
    data: bytes,
    url: str,
    first_line: int,
    first_request: int,
    model: str | None,
    dimensions: int | None = None,
    skip: frozenset[int] = frozenset(),
) -> Rows:
    """Rows of the requests in ``data`` (request numbers count non-blank lines);
    requests numbered in ``skip`` (duplicate custom_ids, refused at scan) give none."""
    out = Rows(ids=[], requests=[], positions=[], base64=[])
    assert out.ids is not None and out.requests is not None and out.positions is not None
    assert out.base64 is not None
    request = first_request
    for line in split_lines(decode(data, url, first_line)):
        if not line.strip():
            continue
        if request in skip:
            request += 1
            continue
        judged = judge(line, model, dimensions)
        for position, text in enumerate(judged.texts):
            out.texts.append(text)
            out.ids.append(judged.custom_id)
            out.requests.append(request)
            out.positions.append(position)
            out.base64.append(judged.base64)
        request += 1
    return out


def response_line(
    custom_id: str | None, model: str, vectors: Any, tokens: int, base64: bool = False
) -> dict[str, Any]:
    """One output line of a served request (``vectors``: its rows, in input order;
    ``base64``: each embedding as base64 of its little-endian float32 bytes)."""
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": to_base64(row) if base64 else [float(x) for x in row],
        }
        for i, row in enumerate(vectors)
    ]
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": uuid.uuid4().hex,
            "body": {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        },
        "error": None,
    }


def error_line(custom_id: str | None, code: str, message: str) -> dict[str, Any]:
    """One output line of a request that could not be served."""
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
