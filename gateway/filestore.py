"""Where the gateway keeps files: a folder the workers can read (default
``<state dir>/files/``) or an ``s3://bucket/prefix/`` (``EMBEDFLEET_FILE_STORE``).

A file's bytes live at ``<store><file id>.jsonl``: a batch's dataset job reads its input
from there, and its parts go under ``<store>batches/<batch id>/``. What is known about a
file (name, size, purpose, time) lives in Redis (``gateway.files``), so every gateway
process sees the same files.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tasks.io import s3

#: Bytes of one block when a file is copied or streamed.
BLOCK = 1024 * 1024


class FileStore:
    """The bytes of the gateway's files (see the module docstring)."""

    def __init__(self, root: str) -> None:
        if root.startswith("s3://"):
            self.root = root if root.endswith("/") else root + "/"
        else:
            folder = Path(root).expanduser().resolve()
            folder.mkdir(parents=True, exist_ok=True)
            self.root = str(folder) + "/"

    @property
    def on_s3(self) -> bool:
        return self.root.startswith("s3://")

    def url(self, name: str) -> str:
        """Where ``name`` (a file id with its extension, or a path below the root) lives."""
        return self.root + name

    def save(self, name: str, source: BinaryIO) -> int:
        """Copy ``source`` to ``name`` atomically; returns the bytes written."""
        if self.on_s3:
            data = source.read()
            s3.put(self.url(name), data)
            return len(data)
        target = Path(self.url(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        with tmp.open("wb") as out:
            shutil.copyfileobj(source, out, BLOCK)
            size = out.tell()
        os.replace(tmp, target)
        return size

    def save_path(self, name: str, path: Path) -> int:
        with path.open("rb") as source:
            return self.save(name, source)

    def exists(self, name: str) -> bool:
        if self.on_s3:
            return s3.head(self.url(name)) is not None
        return Path(self.url(name)).is_file()

    def read(self, name: str) -> Iterator[bytes]:
        """The bytes of ``name``, block by block (``FileNotFoundError`` when gone)."""
        if self.on_s3:
            if s3.head(self.url(name)) is None:
                raise FileNotFoundError(self.url(name))
            yield from s3.stream(self.url(name))
            return
        with open(self.url(name), "rb") as source:
            while block := source.read(BLOCK):
                yield block

    def delete(self, name: str) -> None:
        if self.on_s3:
            s3.delete(self.url(name))
            return
        Path(self.url(name)).unlink(missing_ok=True)
