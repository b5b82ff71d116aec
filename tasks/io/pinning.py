"""Pinning a dataset job's input at submit, and checking the pin before a chunk is read.

At submit the scan records, per file, a snapshot: absolute path or URL, size,
modification time, and for S3 the ETag (and VersionId when the bucket keeps versions).
For the line formats it also hashes every chunk's byte range while it streams the file
(xxh3-64: it reads what the scan reads anyway, at memory speed); for parquet, whose
scan reads only the footer, it hashes the footer (row group offsets, sizes and
statistics) and keeps the file's size and mtime.

A worker checks the pin before it encodes (:func:`check_range`, :func:`check_parquet`):
a range whose bytes hash differently, a parquet file with another size, mtime or
footer, or an S3 object whose ETag moved (ranged GETs carry ``If-Match``) fails the
chunk with :class:`InputChanged`. Rows appended to a local line file after submit are
outside the job: its chunks end where the snapshot's size ended.
"""

from __future__ import annotations

import datetime
import os
from collections import deque
from collections.abc import Iterable
from typing import Any

import xxhash

from tasks.contract.errors import InputChanged, InputError
from tasks.io import s3, sources


def changed(url: str, what: str) -> InputChanged:
    return s3.changed(url, what)


def digest(data: bytes | memoryview) -> int:
    """The content hash of a byte range (xxh3-64, as an unsigned int)."""
    return int(xxhash.xxh3_64_intdigest(data))


class RangeHasher:
    """Hashes consecutive byte ranges of a streamed file as the scan cuts them.

    A range may end in an earlier block than the one just read (the cutter closes a
    chunk when the next record would pass its byte limit), so the blocks since the last
    closed range are kept (views, no copies) until a range closes. Most ranges lie
    inside one block and are hashed in one call."""

    def __init__(self, start: int) -> None:
        self.pos = start  # where the next range starts
        self._pieces: deque[tuple[int, memoryview]] = deque()  # (offset, bytes) from pos on
        self._seen = start  # the end of the bytes handed in so far

    def feed(self, offset: int, data: bytes, stops: Iterable[int]) -> list[int]:
        """Take the block ``data`` (at ``offset``); close a range at each of ``stops``
        (absolute, increasing, within the bytes handed in) and return their hashes."""
        end = offset + len(data)
        if end > self._seen:
            skip = max(0, self._seen - offset)
            self._pieces.append((offset + skip, memoryview(data)[skip:]))
            self._seen = end
        out, pos, pieces = [], self.pos, self._pieces
        one = xxhash.xxh3_64_intdigest
        for stop in stops:
            first, view = pieces[0]
            if stop - first <= len(view):
                out.append(int(one(view[pos - first : stop - first])))
            else:
                out.append(self._spanning(pos, stop))
            pos = stop
            while pieces and pieces[0][0] + len(pieces[0][1]) <= pos:
                pieces.popleft()
        self.pos = pos
        return out

    def _spanning(self, start: int, stop: int) -> int:
        hasher = xxhash.xxh3_64()
        for first, view in self._pieces:
            lo, hi = max(start, first) - first, min(stop, first + len(view)) - first
            if hi > lo:
                hasher.update(view[lo:hi])
        return int(hasher.intdigest())


def snapshot(url: str) -> dict[str, Any]:
    """What a file is at submit: ``{url, size, mtime, mtime_ns, etag, version_id}``
    (``mtime`` ISO 8601 UTC; ``etag``/``version_id`` None for local files)."""
    if sources.is_s3(url):
        head = s3.head_meta(url)
        if head is None:
            raise InputError(f"{url}: no such object")
        mtime_ns = int(head["mtime"] * 1e9)
        size, etag, version = head["size"], head["etag"], head["version_id"]
    else:
        st = os.stat(url)
        size, mtime_ns, etag, version = st.st_size, st.st_mtime_ns, None, None
    when = datetime.datetime.fromtimestamp(mtime_ns / 1e9, datetime.UTC)
    return {
        "url": url,
        "size": int(size),
        "mtime": when.isoformat().replace("+00:00", "Z"),
        "mtime_ns": mtime_ns,
        "etag": etag,
        "version_id": version,
    }


def public(entry: dict[str, Any]) -> dict[str, Any]:
    """The snapshot of one file as the job's spec (and the manifest) records it."""
    return {k: entry.get(k) for k in ("url", "size", "mtime", "etag", "version_id")}


def check_range(file: dict[str, Any], start: int, stop: int, data: bytes, expected: int) -> None:
    """Raise :class:`InputChanged` unless ``data`` is what bytes ``start-stop`` held."""
    if len(data) != stop - start or digest(data) != expected:
        raise changed(file["url"], f"bytes {start}-{stop}")


def footer_digest(url: str, size: int, pin: dict[str, Any] | None = None) -> int:
    """Hash of a parquet file's footer (its last 8 bytes give the footer's length)."""
    if size < 12:
        raise InputError(f"{url}: the parquet file is corrupt or truncated ({size} bytes)")
    tail = sources.read_range(url, size - 8, size, pin)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1" or length > size - 12:
        raise InputError(f"{url}: the parquet file is corrupt or truncated (no footer)")
    return digest(sources.read_range(url, size - 8 - length, size - 8, pin) + tail)


def check_parquet(file: dict[str, Any], start: int, stop: int) -> None:
    """Raise :class:`InputChanged` unless a parquet file is as pinned: same size and
    mtime (local) or ETag (S3, checked by ``If-Match``), and the same footer."""
    url, size = file["url"], int(file["size"])
    what = f"rows {start}-{stop}"
    if not sources.is_s3(url):
        st = os.stat(url)
        if st.st_size != size or st.st_mtime_ns != int(file["mtime_ns"]):
            raise changed(url, what)
    try:
        found = footer_digest(url, size, file)
    except InputChanged:
        raise
    except InputError:
        raise changed(url, what) from None
    if found != int(file["footer"]):
        raise changed(url, what)
