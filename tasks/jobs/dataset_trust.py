"""The worker's check of a dataset job before it acts on it: signed by this fleet?

:func:`verified_chunk` is the only way the dataset chunk task learns which file and
range to read: it reads the job's whole plan and file index once per job (a few KB per
thousand chunks), checks the record's signature over them (``tasks.contract.signing``)
and keeps what it checked. Every chunk checks the record's signed fields again against
that (one HMAC, no extra Redis read), so a record changed after the first check is
refused too, and what the worker reads comes only from the checked bytes.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from tasks.contract import signing
from tasks.contract.errors import InvalidRequest, UnsignedJob
from tasks.io.scan import CHUNK_DTYPE
from tasks.jobs import datasets

#: Jobs whose checked plan a worker keeps (a job of 2,000,000 rows: ~80 KB).
KEEP_JOBS = 8

#: The message of a refused record (the issue's and the README's words).
NOT_SIGNED = "job record not signed by this fleet"


@dataclass(frozen=True)
class _Checked:
    plan: np.ndarray
    files: dict[int, str]
    plan_digest: str
    files_digest: str


_checked: OrderedDict[tuple[str, str], _Checked] = OrderedDict()
_lock = threading.Lock()


def verified_chunk(
    client: redis.Redis, record: datasets.DatasetRecord, index: int, key: bytes
) -> tuple[np.void, dict[str, Any]]:
    """``(plan row, file entry)`` of chunk ``index`` once ``record`` verifies with
    ``key``; :class:`UnsignedJob` when it does not (nothing else is read)."""
    if not record.signature:
        raise UnsignedJob(f"{NOT_SIGNED} (job {record.id} has no signature)")
    cache = (record.id, record.signature)
    with _lock:
        checked = _checked.get(cache)
        if checked is not None:
            _checked.move_to_end(cache)
    if checked is None:
        checked = _read(client, record.id)
    fields = signing.job_fields(
        record.id,
        record.model,
        record.version,
        record.alias,
        record.n,
        record.total,
        record.spec_json,
    )
    signed = signing.message(fields, checked.plan_digest, checked.files_digest)
    if not signing.verify(key, signed, record.signature):
        raise UnsignedJob(
            f"{NOT_SIGNED}: job {record.id}'s signature does not verify with this worker's "
            "job key (EMBEDFLEET_JOB_KEY, else job.key in EMBEDFLEET_STATE_DIR); "
            "nothing was read or written"
        )
    with _lock:
        _checked[cache] = checked
        while len(_checked) > KEEP_JOBS:
            _checked.popitem(last=False)
    if index >= checked.plan.size:
        raise InvalidRequest(f"job {record.id} has no chunk {index}")
    row = checked.plan[index]
    raw = checked.files.get(int(row["file"]))
    if raw is None:
        raise InvalidRequest(f"job {record.id} has no file {int(row['file'])}")
    return row, dict(json.loads(raw))


def _read(client: redis.Redis, job_id: str) -> _Checked:
    """The job's plan and file index as stored, with their digests."""
    pipe = client.pipeline()
    pipe.get(datasets.key(job_id, "plan"))
    pipe.hgetall(datasets.key(job_id, "files"))
    plan_bytes, raw_files = pipe.execute()
    plan_bytes = plan_bytes or b""
    files = {int(i): v.decode() for i, v in (raw_files or {}).items()}
    usable = len(plan_bytes) - len(plan_bytes) % CHUNK_DTYPE.itemsize
    return _Checked(
        plan=np.frombuffer(plan_bytes[:usable], dtype=CHUNK_DTYPE),
        files=files,
        plan_digest=signing.digest(plan_bytes),
        files_digest=signing.files_digest(files),
    )
