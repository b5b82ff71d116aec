"""The few S3 calls dataset jobs make: list a prefix, read a byte range, stream an
object, put one object. boto3 is imported lazily and configured by its own chain
(``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, profiles, roles); nothing is invented.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

from tasks.contract.errors import InputChanged, InputError

#: Bytes of one streamed read while scanning an object.
STREAM_BLOCK = 8 * 1024 * 1024

_local = threading.local()


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    if not url.startswith("s3://"):
        raise InputError(f"{url}: not an s3:// URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise InputError(f"{url}: no bucket in the URL")
    return bucket, key


def client() -> Any:
    """A boto3 S3 client of this thread (boto3 clients are built per thread here)."""
    found = getattr(_local, "client", None)
    if found is None:
        import boto3

        found = boto3.session.Session().client("s3")
        _local.client = found
    return found


def list_objects(url: str) -> list[tuple[str, int]]:
    """``(s3 URL, size)`` of every object under the prefix of ``url``, sorted by key."""
    bucket, prefix = split_url(url)
    pages = client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    found = [
        (f"s3://{bucket}/{item['Key']}", int(item["Size"]))
        for page in pages
        for item in page.get("Contents", [])
    ]
    return sorted(found)


def head(url: str) -> int | None:
    """Size of the object at ``url``, or None when there is none."""
    bucket, key = split_url(url)
    try:
        return int(client().head_object(Bucket=bucket, Key=key)["ContentLength"])
    except Exception as exc:  # botocore's ClientError: 404 means no such object
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def head_meta(url: str) -> dict[str, Any] | None:
    """``{size, mtime (epoch s), etag, version_id}`` of the object at ``url``, or None."""
    bucket, key = split_url(url)
    try:
        found = client().head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore's ClientError: 404 means no such object
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return {
        "size": int(found["ContentLength"]),
        "mtime": found["LastModified"].timestamp(),
        "etag": found.get("ETag"),
        "version_id": found.get("VersionId"),
    }


def changed(url: str, what: str) -> InputChanged:
    """The error of a chunk whose input is not what the scan pinned (``tasks.io.pinning``)."""
    return InputChanged(f"the input changed since it was submitted: {url} {what}")


def _pinned(pin: dict[str, Any] | None) -> dict[str, str]:
    """``get_object`` arguments that read exactly the object the scan saw."""
    if not pin:
        return {}
    args = {"IfMatch": pin["etag"]} if pin.get("etag") else {}
    if pin.get("version_id"):
        args["VersionId"] = pin["version_id"]
    return args


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _get(url: str, pin: dict[str, Any] | None, what: str, **args: Any) -> Any:
    bucket, key = split_url(url)
    try:
        return client().get_object(Bucket=bucket, Key=key, **args, **_pinned(pin))
    except Exception as exc:
        if pin and _code(exc) in ("PreconditionFailed", "412", "NoSuchVersion"):
            raise changed(url, what) from None
        raise


def read_range(url: str, start: int, stop: int, pin: dict[str, Any] | None = None) -> bytes:
    """Bytes ``[start, stop)`` of the object at ``url`` (``pin``: as the scan saw it)."""
    if stop <= start:
        return b""
    found = _get(url, pin, f"bytes {start}-{stop}", Range=f"bytes={start}-{stop - 1}")
    return bytes(found["Body"].read())


def stream(url: str, pin: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The object at ``url``, block by block."""
    body = _get(url, pin, "while it was scanned")["Body"]
    yield from body.iter_chunks(STREAM_BLOCK)


def put(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` in one PUT (atomic: readers see all of it or nothing)."""
    bucket, key = split_url(url)
    client().put_object(Bucket=bucket, Key=key, Body=data)


def delete(url: str) -> None:
    bucket, key = split_url(url)
    client().delete_object(Bucket=bucket, Key=key)


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over an S3 object (range GETs), for pyarrow's parquet
    reader: it reads the footer and the row groups it needs, never the whole object."""

    def __init__(self, url: str, size: int, pin: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.url, self.size, self.pos, self.pin = url, size, 0, pin

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        stop = min(self.size, self.pos + len(buffer))
        data = read_range(self.url, self.pos, stop, self.pin)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def read(self, n: int = -1) -> bytes:
        stop = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        data = read_range(self.url, self.pos, stop, self.pin)
        self.pos += len(data)
        return data

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True
