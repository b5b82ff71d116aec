"""Output files, chosen by extension: .npy (n x dim float32), .parquet, .jsonl.

Rows are in input order. Parquet and JSONL rows carry ``row`` (0-based input row, the name
dataset parts use too) and ``embedding``, and ``id`` when the input rows had one (``id``,
``custom_id`` or ``--id-field``). Files written before the rename name the row ``index``;
:func:`read_embeddings` reads both.

A ``long_text=windows`` job has a vector per window: ``row`` then repeats (a row's windows
in order) and .parquet/.jsonl rows carry ``window``, ``char_start``, ``char_end``,
``tokens`` and ``truncated``; a .npy file gets the row index beside it, ``NAME.rows.npy``
(m int64: :func:`rows_path`). A .npy written without a row index removes a
``NAME.rows.npy`` an earlier windows job left there (:func:`drop_stale_rows`), so a
reader never pairs an old row index with new vectors.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from producers.errors import UsageError
from tasks.contract.logs import event_logger

log = event_logger(__name__)

FORMATS = (".npy", ".parquet", ".jsonl")
#: The row column of every output (list files and dataset parts alike).
ROW = "row"
#: What list outputs named it before (read back still).
OLD_ROW = "index"


def check_output(path: str | Path) -> Path:
    """Refuse an output path of an unknown format before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        hint = f", or {path}/ for a dataset job (parquet parts)" if not path.suffix else ""
        raise UsageError(
            f"{path}: unsupported output format; use one of {', '.join(FORMATS)}{hint}"
        )
    return path


def check_writable(path: str | Path) -> Path:
    """:func:`check_output`, and the file can be created there: checked before a job is
    queued, so an unwritable path is one clear line, not a job that ran for nothing."""
    path = check_output(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; name an output file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied", str(path))
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the output here: {exc.strerror or exc}") from exc
    return path


def rows_path(path: str | Path) -> Path:
    """Where a .npy output of a ``long_text=windows`` job keeps its row index:
    ``out.npy`` -> ``out.rows.npy``."""
    path = Path(path)
    return path.with_name(path.stem + ".rows.npy")


def write_rows(path: str | Path, rows: np.ndarray) -> Path:
    """Write the row index of the vectors in the .npy file ``path`` beside it
    (:func:`rows_path`), atomically."""
    target = rows_path(path)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, np.asarray(rows, dtype=np.int64))
    tmp.replace(target)
    return target


def drop_stale_rows(path: str | Path) -> Path | None:
    """Remove the row index (:func:`rows_path`) an earlier ``long_text=windows`` job left
    beside the .npy file ``path``, before a plain job's vectors replace that file: it
    would name the input row of vectors that are no longer there. Returns the removed
    path (None when there was none); the caller says so."""
    stale = rows_path(path)
    try:
        stale.unlink()
    except FileNotFoundError:
        return None
    return stale


def stale_rows_note(removed: Path | None) -> str:
    """What the CLI adds to its ``wrote ...`` line when :func:`drop_stale_rows` removed
    a file ("" when it did not)."""
    if removed is None:
        return ""
    return f" (removed {removed}: the row index of an earlier --long-text windows job)"


def write_embeddings(
    path: str | Path,
    vectors: np.ndarray,
    ids: list[str | None] | None = None,
    columns: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``vectors`` (input order) to ``path``; the format comes from the extension.
    ``ids`` (the input's id of each row) become an ``id`` column / field; ``columns``
    (per row: ``tokens``, ``truncated``) columns / fields of .parquet and .jsonl.
    ``columns["row"]`` (``long_text=windows``: the input row of each vector, with
    ``window``, ``char_start``, ...) replaces ``0 .. n-1`` as the row column; a .npy
    file then gets it beside (:func:`write_rows`)."""
    columns = columns or {}
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".npy":
        with tmp.open("wb") as fh:
            np.save(fh, _stored(vectors))
        if ROW in columns:
            write_rows(path, columns[ROW])
        elif removed := drop_stale_rows(path):  # before the new vectors take the name
            log.warning("event=stale_rows_removed removed=%s output=%s", removed, path)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(_stored(vectors).ravel())
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        table = {ROW: pa.array(np.arange(len(vectors))), "embedding": column}
        if ids is not None:
            table["id"] = pa.array(ids, type=pa.string())
        for name, values in columns.items():
            table[name] = pa.array(np.asarray(values))
        pq.write_table(pa.table(table), tmp)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            for i, row in enumerate(vectors):
                line: dict[str, object] = {ROW: i, "embedding": row.tolist()}
                if ids is not None:
                    line["id"] = ids[i]
                for name, values in columns.items():
                    line[name] = values[i].item()
                fh.write(json.dumps(line) + "\n")
    tmp.replace(path)
    return path


def _stored(vectors: np.ndarray) -> np.ndarray:
    """float32, or the int8/uint8 of a quantized job as it is."""
    quantized = vectors.dtype in (np.int8, np.uint8)
    return np.ascontiguousarray(vectors, dtype=None if quantized else np.float32)


def read_embeddings(path: str | Path) -> np.ndarray:
    """Read back what :func:`write_embeddings` wrote."""
    path = check_output(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        keys = [ROW if ROW in table.column_names else OLD_ROW]
        keys += ["window"] if "window" in table.column_names else []  # long_text=windows
        table = table.sort_by([(k, "ascending") for k in keys])
        return np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    with path.open(encoding="utf-8") as fh:
        rows = sorted(
            (json.loads(line) for line in fh),
            key=lambda r: (r[ROW] if ROW in r else r[OLD_ROW], r.get("window", 0)),
        )
    return np.asarray([r["embedding"] for r in rows], dtype=np.float32)
