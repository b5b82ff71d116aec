"""Turning the bytes of an input range into rows: texts, and ids when the input has them.

One rule for every format, so rows never shift: every record is a row, and an empty
text is a row like any other. A blank .txt line, an empty jsonl string, an empty CSV
cell (or a blank CSV line) and an empty parquet string are rows whose text is ``""``;
they are embedded as the empty string. A blank or whitespace-only .jsonl line is no
record (as pandas, duckdb, polars and every jsonl reader treat it), so it is no row. A text that is null or not
a string (a number, a list), bytes that are not UTF-8, or a lone surrogate
(``"\\ud800"`` in JSON) is an :class:`InputError` naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from tasks.contract.errors import InputError

#: Characters one CSV cell may hold (Python's csv default is 128 KiB); bigger is refused.
CSV_FIELD_LIMIT = 131072
#: Id fields looked for, in order, when the job names none.
ID_FIELDS = ("id", "custom_id")
BOM = b"\xef\xbb\xbf"


@dataclass
class Rows:
    """Texts of a range in row order, with ids (or None) and, for OpenAI batch input,
    the request number and position in the request of each text."""

    texts: list[str] = field(default_factory=list)
    ids: list[str | None] | None = None
    requests: list[int] | None = None
    positions: list[int] | None = None
    base64: list[bool] | None = None  # OpenAI: the row's request asks for base64


def decode(data: bytes, url: str, first_line: int) -> str:
    """UTF-8 text of ``data``; an error names the line (1-based in the file)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise InputError(
            f"{url}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}); "
            f"inputs must be UTF-8 text"
        ) from None


def split_lines(text: str) -> list[str]:
    """Lines of ``text``: a final newline ends the last line, it adds no empty one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def as_text(value: Any, url: str, where: str, name: str) -> str:
    """A row's text: a string, checked for lone surrogates; null or a number is refused."""
    if not isinstance(value, str):
        shown = "null" if value is None else f"{type(value).__name__} {value!r:.40}"
        raise InputError(f"{url}: {where}: field {name!r} is {shown}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"{url}: {where}: field {name!r} holds a lone surrogate (not valid Unicode)"
        ) from None
    return value


def as_id(value: Any) -> str | None:
    """Ids travel as strings (numbers are written in decimal), so parts share one schema."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def parse_txt(data: bytes, url: str, first_line: int) -> Rows:
    return Rows(texts=split_lines(decode(data, url, first_line)))


def parse_jsonl(
    data: bytes, url: str, first_line: int, text_field: str, id_field: str | None
) -> Rows:
    out = Rows(ids=[] if id_field else None)
    for n, line in enumerate(split_lines(decode(data, url, first_line)), first_line):
        if not line.strip(" \t\r"):
            continue  # a blank line is no record (tasks.io.boundaries agrees)
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{url}:{n}: invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise InputError(f"{url}: line {n}: a JSON object is expected")
        if text_field not in record:
            raise InputError(f"{url}:{n}: no field {text_field!r}")
        out.texts.append(as_text(record.get(text_field), url, f"line {n}", text_field))
        if out.ids is not None:
            out.ids.append(as_id(record.get(id_field)))
    return out


def csv_header(data: bytes, url: str) -> list[str]:
    """Column names of a CSV file's first record."""
    records = csv_records(decode(data.removeprefix(BOM), url, 1), url, 1)
    if not records:
        raise InputError(f"{url}: the CSV file has no header")
    return records[0]


def parse_csv(
    data: bytes,
    url: str,
    first_record: int,
    columns: list[str],
    text_field: str,
    id_field: str | None,
) -> Rows:
    text_at = columns.index(text_field)
    id_at = columns.index(id_field) if id_field else -1
    out = Rows(ids=[] if id_field else None)
    for record in csv_records(decode(data, url, first_record), url, first_record):
        out.texts.append(record[text_at] if text_at < len(record) else "")
        if out.ids is not None:
            value = record[id_at] if id_at < len(record) else ""
            out.ids.append(value if value != "" else None)
    return out


def csv_records(text: str, url: str, first: int, whole_file: bool = False) -> list[list[str]]:
    """CSV records of ``text`` (``first``: the number of its first record). A quote that
    is never closed is an error naming its line (``whole_file``) or record: Python's csv
    reader would fold the rest of the text into one cell."""
    if text.count('"') & 1:
        at = text.rfind('"')
        line = text.count("\n", 0, at)
        if whole_file:
            where = f"line {line + 1}"
        else:
            where = f"line {line + 1} of the range from record {first}"
        raise InputError(
            f"{url}: {where}: a quote opened here is never closed (unclosed CSV quote); "
            f'close it or escape it as ""'
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
    except csv.Error as exc:
        where = f"record {first + len(records)}"
        if "field larger than field limit" in str(exc):
            raise InputError(
                f"{url}: {where}: a cell is over {CSV_FIELD_LIMIT // 1024} KiB "
                f"(the CSV field limit); shorten it or use .jsonl"
            ) from None
        raise InputError(f"{url}: {where}: invalid CSV: {exc}") from None
    return records


csv.field_size_limit(CSV_FIELD_LIMIT)


def pick_id_field(names: list[str] | set[str], asked: str | None, url: str) -> str | None:
    """The id field of an input: the one asked for (which must exist), else ``id`` or
    ``custom_id`` when present, else none."""
    if asked:
        if asked not in names:
            raise InputError(f"{url}: no id field {asked!r}; fields: {sorted(names)}")
        return asked
    return next((name for name in ID_FIELDS if name in names), None)
