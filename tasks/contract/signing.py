"""The job key: producers sign what a worker will act on; workers check it first.

A dataset job record names files a worker reads and a folder it writes. Anyone who can
write to Redis could write such a record; the job key makes Redis access alone not
enough. Producers sign the record's fields a worker acts on (model, version, rows,
chunks, the spec with input, output and format, and digests of the plan and the file
index) with HMAC-SHA256; a worker refuses a record whose signature does not verify,
before it reads or writes anything (``tasks.jobs.dataset_trust``). Celery's own message
signing is the precedent; this signs the job, not each message, and needs no certificates.

The key: ``EMBEDFLEET_JOB_KEY`` where producers and workers run on several machines (the
same value everywhere). On one machine, with the variable unset, every producer and
worker uses ``job.key`` in the state folder (``EMBEDFLEET_STATE_DIR``), created 0600 on
first use: written to a private temporary file, then hard-linked into place, which
fails if another process got there first, so two processes racing read the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.contract.errors import ConfigError

if TYPE_CHECKING:
    from tasks.contract.settings import Settings

#: The key file's name in the state folder.
KEY_FILE = "job.key"
#: Random bytes of a generated key (written as hex).
KEY_BYTES = 32
#: Version of what is signed; a worker refuses a record signed another way.
SCHEME = "v1"

_keys: dict[tuple[str | None, str], bytes] = {}
_lock = threading.Lock()


def key_of(settings: Settings) -> bytes:
    """The job key ``settings`` give (``EMBEDFLEET_JOB_KEY``, else the state folder's)."""
    secret = settings.job_key
    return fleet_key(secret.get_secret_value() if secret else None, settings.state_dir)


def fleet_key(job_key: str | None, state_dir: Path) -> bytes:
    """This fleet's job key: ``job_key`` (``EMBEDFLEET_JOB_KEY``) when set, else the key
    file in ``state_dir``, created on first use. Read once per process.
    :class:`ConfigError` (one line) when the key file cannot be read or made."""
    cache = (job_key, str(state_dir))
    with _lock:
        if cache not in _keys:
            _keys[cache] = job_key.encode() if job_key else _key_file(Path(state_dir))
        return _keys[cache]


def key_path(state_dir: Path) -> Path:
    return Path(state_dir) / KEY_FILE


def _key_file(state_dir: Path) -> bytes:
    path = key_path(state_dir)
    try:
        if not path.exists():
            _create(path)
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the job key {path}: {exc.strerror or exc} "
            f"(set EMBEDFLEET_JOB_KEY, or EMBEDFLEET_STATE_DIR to a writable folder)"
        ) from None
    if len(key) < 16:
        raise ConfigError(
            f"the job key {path} is shorter than 16 bytes: delete it to make a new one"
        )
    return key


def _create(path: Path) -> None:
    """Write a new random key to ``path`` unless one is there: all or nothing, 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(KEY_BYTES).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and refuses to replace a key another process made
        except FileExistsError:
            pass  # another process won the race: its key is the fleet's
    finally:
        tmp.unlink(missing_ok=True)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_digest(files: Mapping[int, str]) -> str:
    """Digest of a job's file index (index -> the JSON stored for it), in index order."""
    return digest(json.dumps([files[i] for i in sorted(files)]).encode())


def job_fields(
    job_id: str, model: str, version: str, alias: str, n: int, total: int, spec_json: str
) -> dict[str, Any]:
    """The fields of a dataset job record that its signature covers (``spec_json``: the
    spec exactly as stored)."""
    return {
        "job": job_id,
        "model": model,
        "version": version,
        "alias": alias,
        "n": n,
        "total": total,
        "spec": spec_json,
    }


def message(fields: Mapping[str, Any], plan_digest: str, index_digest: str) -> bytes:
    """The bytes signed for a dataset job: ``fields`` (job id, model, version, n, total
    and the spec exactly as stored) and the digests of the plan and the file index."""
    body = {str(k): str(v) for k, v in fields.items()}
    body.update(scheme=SCHEME, plan=plan_digest, files=index_digest)
    return json.dumps(body, sort_keys=True).encode()


def sign(key: bytes, signed: bytes) -> str:
    return f"{SCHEME}:{hmac.new(key, signed, hashlib.sha256).hexdigest()}"


def verify(key: bytes, signed: bytes, signature: str) -> bool:
    """True when ``signature`` is ``key``'s over ``signed`` (constant-time compare)."""
    return hmac.compare_digest(sign(key, signed), signature)
