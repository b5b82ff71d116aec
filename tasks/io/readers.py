"""Input files of small (list) jobs: .jsonl (field ``text`` unless told), .csv, .parquet,
.txt (a line each), read whole, with the same row rule as dataset jobs
(``tasks.io.rows``): every record is a row, an empty text stays a row.

Every row is checked before anything is queued: a number, bytes that are not UTF-8, a
lone surrogate or a CSV cell over the field limit is one :class:`InputError` naming the
file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.contract.errors import InputError
from tasks.io import rows

FORMATS = (".jsonl", ".csv", ".parquet", ".txt")


def read_texts(path: str | Path, field: str | None = None) -> list[str]:
    """All texts of an input file, in file order."""
    return read_rows(path, field).texts


def read_rows(path: str | Path, field: str | None = None, id_field: str | None = None) -> rows.Rows:
    """Texts (and ids, when the input has an ``id``/``custom_id`` or ``id_field``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unsupported input format {suffix!r}; use one of {FORMATS}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    url = str(path)
    if suffix == ".parquet":
        got = _parquet(path, field, id_field)
    else:
        data = path.read_bytes().removeprefix(rows.BOM)
        if suffix == ".txt":
            got = rows.parse_txt(data, url, 1)
        elif suffix == ".jsonl":
            got = _jsonl(data, url, field or "text", id_field)
        else:
            got = _csv(data, url, field, id_field)
    if not got.texts:
        raise InputError(f"{path}: the input holds no texts")
    return got


def _jsonl(data: bytes, url: str, field: str, id_field: str | None) -> rows.Rows:
    first, at = b"", 0
    while at < len(data) and not first.strip(b" \t\r"):  # the first non-blank line
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        first, at = data[at:end], end + 1
    names: set[str] = set()
    if first:
        try:
            record = json.loads(first)
            names = set(record) if isinstance(record, dict) else set()
        except ValueError:
            names = set()  # parse_jsonl names the line
    return rows.parse_jsonl(data, url, 1, field, rows.pick_id_field(names, id_field, url))


def _csv(data: bytes, url: str, field: str | None, id_field: str | None) -> rows.Rows:
    records = rows.csv_records(rows.decode(data, url, 1), url, 1, whole_file=True)
    if not records:
        raise InputError(f"{url}: the CSV file is empty")
    columns = records[0]
    column = field or ("text" if "text" in columns or len(columns) != 1 else columns[0])
    if column not in columns:
        raise InputError(f"{url}: no column {column!r}; columns: {columns}")
    id_name = rows.pick_id_field(columns, id_field, url)
    text_at, id_at = columns.index(column), columns.index(id_name) if id_name else -1
    out = rows.Rows(ids=[] if id_name else None)
    for record in records[1:]:
        out.texts.append(record[text_at] if text_at < len(record) else "")
        if out.ids is not None:
            value = record[id_at] if id_at < len(record) else ""
            out.ids.append(value or None)
    return out


def _parquet(path: Path, field: str | None, id_field: str | None) -> rows.Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{path}: not a readable parquet file (truncated or corrupt): {reason}"
        ) from None
    column = field or "text"
    if column not in table.column_names:
        raise InputError(f"{path}: no column {column!r}; columns: {table.column_names}")
    id_name = rows.pick_id_field(table.column_names, id_field, str(path))
    values = table.column(column).to_pylist()
    out = rows.Rows(
        texts=[rows.as_text(v, str(path), f"row {i + 1}", column) for i, v in enumerate(values)]
    )
    if id_name:
        out.ids = [rows.as_id(v) for v in table.column(id_name).to_pylist()]
    return out


def check_texts(texts: Any, where: str = "texts") -> list[str]:
    """Check an in-memory list of texts the same way files are checked."""
    if isinstance(texts, str) or not isinstance(texts, list | tuple):
        raise InputError(f"{where} must be a list of strings")
    if not texts:
        raise InputError(f"{where} is empty: nothing to embed")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{where}[{i}] is {type(text).__name__}, not text: {text!r:.60}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{where}[{i}] holds a lone surrogate (not valid Unicode)") from None
    return list(texts)
