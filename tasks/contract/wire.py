"""The wire format of chunk requests and results.

Requests: ``embed_chunk(job_id=str, index=int, model=str, texts=[str, ...],
options={...})`` serialized with msgpack (JSON accepted; pickle never).

Results: a msgpack map ``{"shape": [n, dim], "dtype": "<f4", "data": <bytes>,
"model": str, "version": str}``; ``data`` is the raw little-endian float32 matrix,
so a result is the float32 size plus a few dozen bytes of framing. ``columns`` (when
present) maps a per-row column name to ``{"dtype", "data"}`` raw bytes of n values:
``tokens`` (<i4), ``truncated`` (|b1); under ``long_text=windows`` a row is a window and
the result also carries ``source_row`` (the text's index in the chunk), ``window``,
``char_start`` and ``char_end`` (all <i4).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.contract.errors import InvalidRequest
from tasks.contract.options import EmbedOptions
from tasks.routing import MODEL_NAME_RE

#: The dtype results travel in: float32, unless the job asked for quantized vectors.
RESULT_DTYPE = "<f4"
#: Every dtype a result may travel in (int8/uint8: ``quantize``).
RESULT_DTYPES = {"<f4": np.float32, "|i1": np.int8, "|u1": np.uint8}
#: Upper bound of texts in one chunk message.
MAX_TEXTS_PER_CHUNK = 4096
#: Characters kept of one text; longer texts are cut here (the model truncates
#: to its own window long before this).
MAX_CHARS_PER_TEXT = 100_000
#: Bytes of text (UTF-8, before truncation) one chunk message may carry by default
#: (``EMBEDFLEET_MAX_CHUNK_BYTES``); bigger chunks are refused. The producer's chunking
#: stays far below: a chunk holds at most max_tokens / window = 8192 / 256 = 32 long
#: texts of at most 100,000 characters, 3.2 MB of ASCII (12.8 MB if every character
#: took 4 bytes).
MAX_CHUNK_BYTES = 32 * 1024 * 1024
#: Option names a chunk may carry.
KNOWN_OPTIONS = frozenset({"version", "normalize", "cache"}) | EmbedOptions.names()


def validate_request(
    job_id: Any,
    index: Any,
    model: Any,
    texts: Any,
    options: Any,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
) -> tuple[str, int, str, list[str], dict[str, Any]]:
    """Check a chunk message field by field; raise :class:`InvalidRequest` naming the field."""
    if not isinstance(job_id, str) or not job_id or len(job_id) > 128:
        raise InvalidRequest(f"job_id must be a non-empty string, got {_short(job_id)}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidRequest(f"index must be a non-negative integer, got {_short(index)}")
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise InvalidRequest(f"model must be a model name, got {_short(model)}")
    if not isinstance(texts, list) or not texts:
        raise InvalidRequest(f"texts must be a non-empty list of strings, got {_short(texts)}")
    if len(texts) > MAX_TEXTS_PER_CHUNK:
        raise InvalidRequest(
            f"texts has {len(texts)} items; a chunk holds at most {MAX_TEXTS_PER_CHUNK}"
        )
    size = 0
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"texts[{i}] must be a string, got {_short(text)}")
        try:  # ASCII text is its own UTF-8 (and cannot hold a lone surrogate)
            size += len(text) if text.isascii() else len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. "\ud800" in JSON
            raise InvalidRequest(f"texts[{i}] is not valid Unicode: {exc.reason}") from None
        if size > max_chunk_bytes:
            raise InvalidRequest(
                f"the chunk holds more than {max_chunk_bytes} bytes of text "
                f"(EMBEDFLEET_MAX_CHUNK_BYTES); send smaller chunks"
            )
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidRequest(f"options must be a map, got {_short(options)}")
    unknown = set(options) - KNOWN_OPTIONS
    if unknown:
        raise InvalidRequest(f"unknown option(s) {sorted(map(str, unknown))}")
    if not isinstance(options.get("version", ""), str):
        raise InvalidRequest(f"options.version must be a string, got {_short(options['version'])}")
    if not isinstance(options.get("cache", True), bool):
        raise InvalidRequest(f"options.cache must be a boolean, got {_short(options['cache'])}")
    if not isinstance(options.get("normalize", False), bool):
        raise InvalidRequest(
            f"options.normalize must be a boolean, got {_short(options['normalize'])}"
        )
    EmbedOptions.from_wire(options)  # names the option holding a bad value
    if max(map(len, texts)) > MAX_CHARS_PER_TEXT:  # one C pass; copies only when needed
        texts = [t if len(t) <= MAX_CHARS_PER_TEXT else t[:MAX_CHARS_PER_TEXT] for t in texts]
    return job_id, index, model, texts, options


#: Per-row columns a result may carry, with their wire dtype.
COLUMN_DTYPES = {
    "tokens": "<i4",
    "truncated": "|b1",
    # long_text=windows: a result row per window (workers.serving.long_text.WindowRows)
    "source_row": "<i4",
    "window": "<i4",
    "char_start": "<i4",
    "char_end": "<i4",
}


def pack_embeddings(
    vectors: np.ndarray,
    model: str,
    version: str = "",
    columns: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Turn an (n, dim) matrix into the result map (raw float32 bytes plus shape), with
    per-row ``columns`` (:data:`COLUMN_DTYPES`)."""
    if vectors.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {vectors.shape}")
    quantized = vectors.dtype in (np.int8, np.uint8)
    data = np.ascontiguousarray(vectors, dtype=None if quantized else RESULT_DTYPE)
    result: dict[str, Any] = {
        "shape": list(data.shape),
        "dtype": data.dtype.str,
        "data": data.tobytes(),
        "model": model,
        "version": version,
    }
    if columns:
        result["columns"] = {
            name: {"dtype": COLUMN_DTYPES[name], "data": _column_bytes(name, values, len(data))}
            for name, values in columns.items()
            if name in COLUMN_DTYPES
        }
    return result


def _column_bytes(name: str, values: np.ndarray, rows: int) -> bytes:
    column = np.ascontiguousarray(values, dtype=COLUMN_DTYPES[name])
    if column.shape != (rows,):
        raise ValueError(f"column {name!r} has shape {column.shape}, expected ({rows},)")
    return column.tobytes()


def unpack_columns(result: Any) -> dict[str, np.ndarray]:
    """The per-row columns of a result map (empty for a result that carries none)."""
    out: dict[str, np.ndarray] = {}
    rows = int(result["shape"][0])
    for name, column in (result.get("columns") or {}).items():
        dtype = COLUMN_DTYPES.get(name)
        if dtype is None or not isinstance(column, dict) or column.get("dtype") != dtype:
            raise InvalidRequest(f"result column {name!r} is not a known column")
        values = np.frombuffer(column["data"], dtype=dtype)
        if values.shape != (rows,):
            raise InvalidRequest(f"result column {name!r} does not hold {rows} values")
        out[name] = values
    return out


def unpack_embeddings(result: Any) -> np.ndarray:
    """Turn a result map back into an (n, dim) matrix (float32, or int8/uint8 for a
    quantized job), checking its framing."""
    if not isinstance(result, dict) or not {"shape", "dtype", "data"} <= set(result):
        raise InvalidRequest(f"not an embedding result: {_short(result)}")
    dtype = RESULT_DTYPES.get(result["dtype"])
    if dtype is None:
        raise InvalidRequest(f"result dtype {result['dtype']!r}, expected {RESULT_DTYPE!r}")
    rows, dim = (int(x) for x in result["shape"])
    data = result["data"]
    size = np.dtype(dtype).itemsize
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) != rows * dim * size:
        raise InvalidRequest(
            f"result data does not hold a {rows}x{dim} {np.dtype(dtype).name} matrix"
        )
    return np.frombuffer(data, dtype=dtype).reshape(rows, dim)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
