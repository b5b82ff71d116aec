"""Models on S3: ``s3://bucket/key`` of one file or of a prefix (a model folder).

Downloads land in the download folder (``EMBEDFLEET_DOWNLOAD_DIR``, default
``~/.cache/embedfleet/models``; not the model cache, which is the models in memory)
under ``s3/<bucket>/<key>/<version>/``, where the version is a hash of every object's
key and ETag: an upload under the same key is a new version, an unchanged model is
never fetched twice. A download goes into a temporary
folder beside its target and is renamed into place, so a reader never sees half a model;
an exclusive ``flock`` per key makes two workers on one machine that fetch the same
model at once download it once (the second waits, then finds it there).

A single ``.onnx`` key brings its sidecar files along (tokenizer, config) when they lie
beside it under the same prefix, so ``s3://bucket/models/custom.onnx`` with a
``tokenizer.json`` next to it is a complete model. When S3 cannot be reached at all
(network, no credentials) the newest version downloaded before is used, with a warning; a refusal
(access denied, no such key) is an error. Endpoints, credentials and region come from
boto3's own chain (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, profiles, roles...);
the config's ``region`` field overrides the region.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock, Timeout

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError

log = event_logger(__name__)

#: Files fetched along with a single ``.onnx`` key when they lie beside it.
SIDECAR_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "config.json",
        "sentence_bert_config.json",
        "modules.json",
    }
)
_PARTIAL = ".partial-"
#: The download folder unless the worker's boot sets another.
DEFAULT_DOWNLOAD_DIR = Path("~/.cache/embedfleet/models")

# Process-wide on purpose: the boot sets it once from its settings
# (EMBEDFLEET_DOWNLOAD_DIR) and the s3 wrapper is built as ``cls(name, spec)`` (the type
# plugin contract), which has no place for it; a caller that has it passes ``folder``.
_download_dir = DEFAULT_DOWNLOAD_DIR


def set_download_dir(path: Path) -> None:
    """The download folder of this process (``EMBEDFLEET_DOWNLOAD_DIR``,
    set at worker boot)."""
    global _download_dir
    _download_dir = Path(path)


def download_dir() -> Path:
    """The download folder: S3 models are fetched under it."""
    return _download_dir.expanduser()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); the key may be empty or end with ``/``."""
    match = re.match(r"^s3://([^/]+)/?(.*)$", uri)
    if not match:
        raise ModelLoadError(f"{uri!r} is not an s3://bucket/key URI")
    return match.group(1), match.group(2)


def versions_dir(uri: str, folder: Path | None = None) -> Path:
    """Folder holding the downloaded versions of ``uri`` (and its ``.lock``), under
    ``folder`` (default: the download folder)."""
    bucket, key = parse_s3_uri(uri)
    return (folder or download_dir()) / "s3" / bucket / _safe_name(key or "_root")


def fetch_s3(uri: str, region: str | None = None, folder: Path | None = None) -> Path:
    """Local copy of ``uri``: the file for a file key, the folder for a prefix."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3_uri(uri)
    key_dir = versions_dir(uri, folder)
    # a Session of its own: boto3's shared default session is not thread-safe to build
    client = boto3.session.Session().client(
        "s3", region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 3})
    )
    try:
        objects, single = list_objects(client, bucket, key)
    except ClientError as exc:
        raise ModelLoadError(f"{uri}: {describe_error(exc)}") from exc
    except BotoCoreError as exc:
        cached = _newest_version(key_dir)
        if cached is None:
            raise ModelLoadError(
                f"{uri}: S3 cannot be reached and nothing is cached: {exc}"
            ) from exc
        log.warning("event=s3_unreachable uri=%s error=%r using=%s", uri, str(exc), cached)
        name = PurePosixPath(key).name
        return cached / name if key and (cached / name).is_file() else cached
    version = _version(objects)
    target = key_dir / version
    if not target.is_dir():
        key_dir.mkdir(parents=True, exist_ok=True)
        with locked(key_dir / ".lock", uri):
            if target.is_dir():  # another process fetched it while we waited
                log.info("event=s3_cache_hit uri=%s version=%s after=lock_wait", uri, version)
            else:
                _download(client, bucket, objects, key_dir, target, uri)
    else:
        log.info("event=s3_cache_hit uri=%s version=%s", uri, version)
    return target / single if single else target


def list_objects(
    client: Any, bucket: str, key: str
) -> tuple[dict[str, tuple[str, str]], str | None]:
    """({local relative path: (s3 key, etag)}, file name when ``key`` is a single file)."""
    from botocore.exceptions import ClientError

    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _status(exc) != 404:
                raise
        else:
            name = PurePosixPath(key).name
            objects = {name: (key, head["ETag"])}
            if name.endswith(".onnx"):
                parent = key[: -len(name)]
                for obj in _list(client, bucket, parent, delimiter="/"):
                    sidecar = obj["Key"][len(parent) :]
                    if sidecar in SIDECAR_FILES:
                        objects[sidecar] = (obj["Key"], obj["ETag"])
            return objects, name
        key += "/"
    objects = {}
    for obj in _list(client, bucket, key):
        rel = obj["Key"][len(key) :]
        if rel and not rel.endswith("/") and ".." not in PurePosixPath(rel).parts:
            objects[rel] = (obj["Key"], obj["ETag"])
    if not objects:
        raise ModelLoadError(
            f"s3://{bucket}/{key}: no such object, and no objects under the prefix"
        )
    return objects, None


def _list(client: Any, bucket: str, prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter=delimiter):
        yield from page.get("Contents", [])


def _download(
    client: Any,
    bucket: str,
    objects: dict[str, tuple[str, str]],
    key_dir: Path,
    target: Path,
    uri: str,
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    for stale in key_dir.glob(_PARTIAL + "*"):  # left by a process killed mid-download
        shutil.rmtree(stale, ignore_errors=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=_PARTIAL, dir=key_dir))
    try:
        total = 0
        for rel, (key, _etag) in sorted(objects.items()):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(dest))
            total += dest.stat().st_size
        os.rename(tmp, target)
    except (ClientError, BotoCoreError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = describe_error(exc) if isinstance(exc, ClientError) else str(exc)
        raise ModelLoadError(f"{uri}: download failed: {reason}") from exc
    log.info(
        "event=s3_downloaded uri=%s version=%s files=%d bytes=%d seconds=%.2f",
        uri,
        target.name,
        len(objects),
        total,
        time.perf_counter() - started,
    )


@contextmanager
def locked(path: Path, uri: str) -> Iterator[None]:
    """Hold ``filelock``'s exclusive lock on ``path`` (an OS lock: released when the
    process dies, too), saying so when another process holds it first."""
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log.info("event=s3_lock_wait uri=%s lock=%s", uri, path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _version(objects: dict[str, tuple[str, str]]) -> str:
    blob = "\n".join(f"{rel}\t{key}\t{etag}" for rel, (key, etag) in sorted(objects.items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _newest_version(key_dir: Path) -> Path | None:
    if not key_dir.is_dir():
        return None
    versions = [p for p in key_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return max(versions, key=lambda p: p.stat().st_mtime, default=None)


def _safe_name(key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key.strip("/"))[-80:]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def describe_error(exc: Any) -> str:
    error = exc.response.get("Error", {})
    status, code = _status(exc), error.get("Code", "")
    message = error.get("Message", "") or str(exc)
    if status == 403 or code in {"AccessDenied", "403", "InvalidAccessKeyId"}:
        return (
            f"access denied (HTTP 403 {code}: {message}); check the worker's AWS credentials "
            "and the bucket policy"
        )
    return f"HTTP {status} {code}: {message}"


def newest_download(uri: str, folder: Path | None = None) -> Path | None:
    """The newest downloaded version folder of ``uri``, or None when there is none."""
    return _newest_version(versions_dir(uri, folder))
