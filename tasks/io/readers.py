"""Input files: .jsonl (field ``text`` unless told), .csv, .parquet, .txt (a line each).

Every row must be text; a number, null or missing field is refused, naming the line,
before anything is queued.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tasks.errors import InputError

FORMATS = (".jsonl", ".csv", ".parquet", ".txt")


def read_texts(path: str | Path, field: str | None = None) -> list[str]:
    """All texts of an input file, in file order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unsupported input format {suffix!r}; use one of {FORMATS}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    reader = {".jsonl": _jsonl, ".csv": _csv, ".parquet": _parquet, ".txt": _txt}[suffix]
    texts = reader(path, field)
    if not texts:
        raise InputError(f"{path}: the input holds no texts")
    return texts


def check_texts(texts: Any, where: str = "texts") -> list[str]:
    """Check an in-memory list of texts the same way files are checked."""
    if isinstance(texts, str) or not isinstance(texts, list | tuple):
        raise InputError(f"{where} must be a list of strings")
    if not texts:
        raise InputError(f"{where} is empty: nothing to embed")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{where}[{i}] is {type(text).__name__}, not text: {text!r:.60}")
    return list(texts)


def _jsonl(path: Path, field: str | None) -> list[str]:
    field = field or "text"
    texts = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
            if not isinstance(row, dict) or field not in row:
                raise InputError(f"{path}:{lineno}: no field {field!r}")
            texts.append(_text(row[field], path, lineno, field))
    return texts


def _csv(path: Path, field: str | None) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        column = field or ("text" if "text" in columns or len(columns) != 1 else columns[0])
        if column is None or column not in columns:
            raise InputError(f"{path}: no column {field or 'text'!r}; columns: {columns}")
        texts = []
        for lineno, row in enumerate(reader, 2):
            value = row.get(column)
            if value is None or value == "":
                raise InputError(f"{path}:{lineno}: column {column!r} is empty")
            texts.append(value)
    return texts


def _parquet(path: Path, field: str | None) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    column = field or "text"
    if column not in table.column_names:
        raise InputError(f"{path}: no column {column!r}; columns: {table.column_names}")
    values = table.column(column).to_pylist()
    return [_text(v, path, i + 1, column, unit="row") for i, v in enumerate(values)]


def _txt(path: Path, field: str | None) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in fh if line.strip()]


def _text(value: Any, path: Path, lineno: int, field: str, unit: str = "line") -> str:
    if not isinstance(value, str):
        shown = "null" if value is None else f"{type(value).__name__} {value!r:.40}"
        raise InputError(f"{path}: {unit} {lineno}: field {field!r} is {shown}, not text")
    return value
