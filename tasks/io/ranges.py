"""Reading one planned chunk of a dataset job: the worker side of ``tasks.io.scan``.

Line formats read their byte range (one seek and read, or one ranged GET on S3 with
``If-Match``) and check its hash against the plan before parsing; parquet checks the
file's size, mtime (or ETag) and footer, then reads the row groups the range overlaps
and keeps the last group decoded (consecutive chunks of a big row group then decode it
once per worker thread). A change since submit is :class:`InputChanged`
(``tasks.io.pinning``); a parquet file that cannot be decoded is said to be corrupt.
Texts are cut to :data:`~tasks.contract.wire.MAX_CHARS_PER_TEXT` characters here, as
list jobs cut them, before any tokenizer sees them.
"""

from __future__ import annotations

import threading
from typing import Any

from tasks.contract.errors import InputError
from tasks.contract.wire import MAX_CHARS_PER_TEXT
from tasks.io import openai, pinning, rows, sources

_parquet_cache = threading.local()


def read_chunk(spec: dict[str, Any], file: dict[str, Any], chunk: Any) -> rows.Rows:
    """Rows of ``chunk`` (one record of ``tasks.io.scan.CHUNK_DTYPE``)."""
    fmt, url = spec["format"], file["url"]
    start, stop = int(chunk["start"]), int(chunk["stop"])
    first = int(chunk["first_record"])
    if fmt == "parquet":
        pinning.check_parquet(file, start, stop)
        got = _parquet(file, start, stop, spec["text_field"], spec["id_field"])
    else:
        data = sources.read_range(url, start, stop, file)
        pinning.check_range(file, start, stop, data, int(chunk["hash"]))
        if start == 0:
            data = data.removeprefix(rows.BOM)
        if fmt == "txt":
            got = rows.parse_txt(data, url, first + 1)
        elif fmt == "jsonl":
            got = rows.parse_jsonl(data, url, first + 1, spec["text_field"], spec["id_field"])
        elif fmt == "csv":
            got = rows.parse_csv(
                data, url, first + 2, file["columns"], spec["text_field"], spec["id_field"]
            )
        elif fmt == "openai":
            skip = frozenset(file.get("skip", ()))
            model, dimensions = spec.get("openai_model"), spec.get("openai_dimensions")
            got = openai.parse(data, url, 1, first, model, dimensions, skip)
        else:
            raise InputError(f"unknown input format {fmt!r}")
    if len(got.texts) != int(chunk["rows"]):
        raise InputError(
            f"{url}: bytes {start}-{stop} hold {len(got.texts)} rows, the plan says "
            f"{int(chunk['rows'])}: the input changed since it was submitted"
        )
    if got.texts and max(map(len, got.texts)) > MAX_CHARS_PER_TEXT:
        got.texts = [t[:MAX_CHARS_PER_TEXT] for t in got.texts]
    return got


def _parquet(
    file: dict[str, Any], start: int, stop: int, text_field: str, id_field: str | None
) -> rows.Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    url, size, footer = file["url"], int(file["size"]), file.get("footer")
    columns = [text_field] + ([id_field] if id_field else [])
    cached = getattr(_parquet_cache, "entry", None)
    if (
        cached is not None
        and cached[0] == (url, footer)
        and cached[1] <= start <= stop <= cached[2]
    ):
        table, offset = cached[3], cached[1]
    else:
        with sources.open_seekable(url, size, file) as fh:
            try:
                pf = pq.ParquetFile(fh)
                groups, offset, at = [], None, 0
                for g in range(pf.metadata.num_row_groups):
                    n = pf.metadata.row_group(g).num_rows
                    if at < stop and start < at + n:
                        groups.append(g)
                        offset = at if offset is None else offset
                    at += n
                table = pf.read_row_groups(groups, columns=columns)
            except (pa.ArrowException, OSError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise InputError(
                    f"{url}: the parquet file is corrupt (rows {start}-{stop} cannot be "
                    f"decoded): {reason}"
                ) from None
        offset = offset or 0
        _parquet_cache.entry = ((url, footer), offset, offset + table.num_rows, table)
    part = table.slice(start - offset, stop - start)
    texts = part.column(text_field).to_pylist()
    out = rows.Rows(
        texts=[rows.as_text(t, url, f"row {start + i}", text_field) for i, t in enumerate(texts)]
    )
    if id_field:
        out.ids = [rows.as_id(v) for v in part.column(id_field).to_pylist()]
    return out
