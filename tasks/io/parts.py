"""Dataset job output: one parquet part per chunk in a folder or under an S3 prefix.

``part-<chunk index, 6+ digits>.parquet`` holds columns ``row`` (int64, the row's
number over the whole input), ``embedding`` (fixed-size list of float32) and ``id``
(string) when the input carries ids; OpenAI batch jobs add ``request`` and ``index``.
Each part is written atomically: a temporary name then a rename on a filesystem, one
PUT on S3 (mode 0640 on a filesystem); so a reader never sees half a part, and a chunk
run twice writes the same bytes twice. ``_manifest.json`` (``tasks.io.manifest``) is
written the same way once every part is in.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from tasks.io import s3

MANIFEST = "_manifest.json"
#: Digits of a part's chunk index (more when a job has a million chunks or more).
PART_DIGITS = 6
#: Mode of a part and the manifest on a filesystem (less what the umask takes away):
#: the worker's user writes, its group reads, others nothing.
PART_MODE = 0o640


def is_folder_target(dest: str) -> bool:
    """True when ``dest`` names a dataset output: ``s3://...``, a path ending in ``/``,
    or an existing directory."""
    return dest.startswith("s3://") or dest.endswith(("/", os.sep)) or Path(dest).is_dir()


def normalize(dest: str) -> str:
    """``dest`` as stored with a job: an absolute folder path or an ``s3://`` prefix,
    ending in ``/``."""
    if dest.startswith("s3://"):
        return dest if dest.endswith("/") else dest + "/"
    return str(Path(dest).resolve()) + "/"


def part_name(index: int) -> str:
    return f"part-{index:0{PART_DIGITS}d}.parquet"


def put(dest: str, name: str, data: bytes) -> None:
    """Write ``data`` as ``dest + name`` atomically. Locally, temporary files a dead
    writer of the same part left (``.<name>.<hex>.tmp``) are removed first."""
    if dest.startswith("s3://"):
        s3.put(dest + name, data)
        return
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(f".{name}.*.tmp"):
        leftover.unlink(missing_ok=True)
    for _ in range(3):  # a writer of the same part, at once, may sweep our temporary
        tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PART_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.replace(tmp, folder / name)
            return
        except FileNotFoundError:
            continue
    raise OSError(f"{dest}{name}: another writer kept removing the temporary file")


def listing(dest: str) -> dict[str, int]:
    """Every entry directly in ``dest`` -> its size in bytes (a sub-folder, or keys below
    a deeper ``/`` on S3, as ``name/`` with size -1); empty when ``dest`` does not exist."""
    found: dict[str, int] = {}
    if dest.startswith("s3://"):
        for url, size in s3.list_objects(dest):
            rest = url[len(dest) :]
            if "/" in rest:
                found[rest.split("/", 1)[0] + "/"] = -1
            elif rest:
                found[rest] = size
        return found
    folder = Path(dest)
    if not folder.is_dir():
        return found
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                found[entry.name + "/"] = -1
            else:
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
    return found


def is_part(name: str) -> bool:
    """``part-<digits>.parquet``: a part of a job."""
    return name.startswith("part-") and name.endswith(".parquet") and name[5:-8].isdigit()


def is_tmp(name: str) -> bool:
    """A local part's temporary file (``.part-....parquet.<hex>.tmp``)."""
    return name.startswith(".part-") and name.endswith(".tmp")


def remove(dest: str, names: list[str]) -> None:
    """Remove ``names`` from ``dest`` (names already gone are fine)."""
    for name in names:
        if dest.startswith("s3://"):
            s3.delete(dest + name)
        else:
            (Path(dest) / name).unlink(missing_ok=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def exists(dest: str, name: str) -> bool:
    if dest.startswith("s3://"):
        return s3.head(dest + name) is not None
    return (Path(dest) / name).is_file()


def read(dest: str, name: str) -> bytes:
    if dest.startswith("s3://"):
        size = s3.head(dest + name)
        return s3.read_range(dest + name, 0, size or 0)
    return (Path(dest) / name).read_bytes()


def check_writable(dest: str) -> None:
    """Fail now, not in a worker, when ``dest`` cannot be written (a probe file)."""
    probe = f".probe-{uuid.uuid4().hex}"
    put(dest, probe, b"")
    if dest.startswith("s3://"):
        s3.delete(dest + probe)
    else:
        (Path(dest) / probe).unlink()


def part_bytes(
    first_row: int,
    vectors: np.ndarray,
    ids: list[str | None] | None = None,
    extra: dict[str, list[int]] | None = None,
    columns: dict[str, np.ndarray] | None = None,
    rows: np.ndarray | None = None,
) -> bytes:
    """A part's parquet bytes: rows ``first_row ...`` of ``vectors`` (n, dim float32);
    ``columns``: typed per-row columns (``tokens`` int32, ``truncated`` bool);
    ``rows``: each vector's input row when they are not one per row
    (``long_text=windows``: a row per window)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    quantized = vectors.dtype in (np.int8, np.uint8)  # ``quantize``: kept as it is
    data = np.ascontiguousarray(vectors, dtype=None if quantized else np.float32)
    n, dim = data.shape
    table: dict[str, Any] = {
        "row": pa.array(
            np.arange(first_row, first_row + n, dtype=np.int64)
            if rows is None
            else np.asarray(rows, dtype=np.int64)
        ),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), dim),
    }
    if ids is not None:
        table["id"] = pa.array(ids, type=pa.string())
    for name, values in (extra or {}).items():
        table[name] = pa.array(np.asarray(values, dtype=np.int64))
    for name, values in (columns or {}).items():
        table[name] = pa.array(np.asarray(values))
    sink = io.BytesIO()
    pq.write_table(pa.table(table), sink)
    return sink.getvalue()
