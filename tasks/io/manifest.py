"""``DEST/_manifest.json``: what a finished dataset job wrote, written last.

The manifest names the job and lists every part with its rows and checksum, so a folder
can be checked against it without Redis (``embedfleet verify DEST/``)::

    {"job": "...", "model": "...", "version": "...", "dimension": 384, "rows": 5000,
     "format": "jsonl", "written": 1765000000.0, "tokens": 61234, "truncated": 0,
     "options": {},
     "input": {"source": "data/*.jsonl",
               "files": [{"url": "/abs/data/a.jsonl", "size": 1234,
                          "mtime": "2026-12-06T10:00:00.123456Z", "etag": null,
                          "version_id": null}]},
     "parts": [{"name": "part-000000.parquet", "first_row": 0, "rows": 1024,
                "bytes": 412345, "sha256": "9f2c..."}, ...]}

``input.files`` is the input snapshot taken at submit (``tasks.io.pinning``): each file's
absolute path or ``s3://`` URL, size, modification time (ISO 8601 UTC), and on S3 its
ETag and VersionId; rows added to a file after submit are outside the job.
``sha256`` is over the part file's bytes; ``bytes`` is its size.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tasks.io import pinning


@dataclass(frozen=True)
class PartEntry:
    """One part as the manifest lists it."""

    name: str
    first_row: int
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A parsed ``_manifest.json``."""

    job: str
    rows: int
    parts: list[PartEntry]
    body: dict[str, Any]


class ManifestError(ValueError):
    """Raised when a ``_manifest.json`` is not one this project writes."""


def input_file(entry: dict[str, Any]) -> dict[str, Any]:
    """A recorded input file (``tasks.jobs.datasets.file``) as the manifest lists it: its
    snapshot at submit (``tasks.io.pinning.public``)."""
    return pinning.public(entry)


def build(
    job: str,
    model: str,
    version: str,
    dimension: int,
    rows: int,
    fmt: str,
    source: str,
    files: list[dict[str, Any]],
    parts: list[PartEntry],
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The manifest's bytes (``extra``: usage totals and embedding options)."""
    body = {
        "job": job,
        "model": model,
        "version": version,
        "dimension": dimension,
        "rows": rows,
        "format": fmt,
        "written": round(time.time(), 3),
        "input": {"source": source, "files": [input_file(f) for f in files]},
        **(extra or {}),
        "parts": [vars(p) for p in parts],
    }
    return (json.dumps(body, indent=1) + "\n").encode()


def parse(data: bytes) -> Manifest:
    """A manifest from its bytes; :class:`ManifestError` names what is wrong."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"not JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("job"), str):
        raise ManifestError("no job named in it")
    try:
        entries = [PartEntry(**p) for p in body["parts"]]
        return Manifest(str(body["job"]), int(body["rows"]), entries, body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"not a parts list this project writes ({exc})") from None


def job_of(data: bytes) -> str | None:
    """The job a manifest names, or None when it names none (any older shape too)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    job = body.get("job") if isinstance(body, dict) else None
    return job if isinstance(job, str) else None
