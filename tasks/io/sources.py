"""Where dataset rows come from: a local file, folder or glob, or an s3:// key or prefix.

A source resolves to a sorted list of :class:`InputFile` of one format; reading the
same source twice gives the same files in the same order, which (with each file's own
order) defines a row's number. Local paths are made absolute: workers read them at the
same path, so they must see the same filesystem (same machine or a shared mount).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.contract.errors import InputError
from tasks.io import s3

#: Input formats by file extension.
EXTENSIONS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "txt"}
#: Bytes of one read while scanning a local file: 1 MiB blocks stay in the CPU's cache
#: between numpy's newline search and the chunk hashing (measured: the scan of 2,000,000
#: rows took 0.063 s in 1 MiB blocks, 0.107 s in 8 MiB blocks).
LOCAL_BLOCK = 1024 * 1024
#: Formats a job may name explicitly (``openai`` is jsonl holding OpenAI Batch requests).
FORMATS = ("jsonl", "csv", "parquet", "txt", "openai")


@dataclass(frozen=True)
class InputFile:
    """One file of a source: its URL (absolute path or ``s3://``), size and format."""

    url: str
    size: int
    format: str


def format_of(name: str) -> str | None:
    """The format a file name's extension says, or None."""
    return EXTENSIONS.get(os.path.splitext(name)[1].lower())


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def resolve(source: str, fmt: str | None = None) -> list[InputFile]:
    """The files of ``source`` in reading order; refuses an empty or mixed source."""
    if is_s3(source):
        found = _s3_files(source)
    else:
        found = _local_files(source)
    usable = [(url, size, format_of(url)) for url, size in found if not _hidden(url)]
    usable = [(u, s, f) for u, s, f in usable if f is not None or len(found) == 1]
    if not usable:
        raise InputError(f"{source}: no input files (.jsonl, .csv, .parquet or .txt) found there")
    formats = {f for _, _, f in usable}
    if fmt in (None, "auto"):
        if len(formats) != 1 or None in formats:
            raise InputError(
                f"{source}: files of several or unknown formats {sorted(map(str, formats))}; "
                f"name one with --format"
            )
        fmt = str(next(iter(formats)))
    elif fmt not in FORMATS:
        raise InputError(f"unknown input format {fmt!r}; use one of {FORMATS}")
    return [InputFile(u, s, fmt) for u, s, _ in usable]


def _hidden(url: str) -> bool:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith((".", "_"))


def _local_files(source: str) -> list[tuple[str, int]]:
    if glob.has_magic(source):
        paths = [Path(p) for p in sorted(glob.glob(source, recursive=True))]
        paths = [p for p in paths if p.is_file()]
    else:
        root = Path(source)
        if root.is_dir():
            paths = sorted(p for p in root.rglob("*") if p.is_file())
        elif root.is_file():
            paths = [root]
        else:
            raise InputError(f"{source}: no such file or folder")
    return [(str(p.resolve()), p.stat().st_size) for p in paths]


def _s3_files(source: str) -> list[tuple[str, int]]:
    bucket, key = s3.split_url(source)
    if key and not key.endswith("/"):
        size = s3.head(source)
        if size is not None:
            return [(source, size)]
    found = s3.list_objects(source if not key or key.endswith("/") else source + "/")
    if not found:
        raise InputError(f"{source}: no such object or prefix")
    return found


def read_range(url: str, start: int, stop: int, pin: dict[str, Any] | None = None) -> bytes:
    """Bytes ``[start, stop)`` of a file, local or S3 (``pin``: the snapshot of
    ``tasks.io.pinning``; S3 reads then carry ``If-Match``)."""
    if is_s3(url):
        return s3.read_range(url, start, stop, pin)
    with open(url, "rb") as fh:
        fh.seek(start)
        return fh.read(stop - start)


def stream(
    url: str, block: int = LOCAL_BLOCK, pin: dict[str, Any] | None = None
) -> Iterator[bytes]:
    """A file, block by block (the scan reads inputs this way: bounded memory)."""
    if is_s3(url):
        yield from s3.stream(url, pin)
        return
    with open(url, "rb") as fh:
        while data := fh.read(block):
            yield data


def open_seekable(url: str, size: int, pin: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    """A seekable binary file for pyarrow (parquet footers and row groups)."""
    return s3.RangeFile(url, size, pin) if is_s3(url) else open(url, "rb")  # noqa: SIM115
