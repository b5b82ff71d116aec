"""What a dataset job wrote, and how it ends: part checksums, the manifest, the claim.

Each chunk records its part's sha256 and size in ``embedfleet:job:<id>:parts`` (40
bytes per chunk at offset ``index * 40``, SETRANGE, only while the job hash exists), so
the worker that finishes the job writes the manifest without reading the parts back; the
key goes once the manifest is written. Before it does, it lists the
destination: every part must be there at the size its chunk wrote (else the chunk fails
naming the part, and ``retry`` rewrites it); other ``part-*.parquet`` files and local
``.part-*.tmp`` leftovers in the job's (claimed) destination are removed. The manifest
goes last, then the claim is released (``tasks.jobs.claims``).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import redis

from tasks.contract.errors import PermanentError
from tasks.contract.logs import event_logger
from tasks.io import manifest, parts
from tasks.jobs import claims, quant_ranges, usage
from tasks.jobs.datasets import DatasetRecord, chunks, key

log = event_logger(__name__)

#: One chunk's entry in ``:parts``: the part's sha256 and its size (0: not recorded).
#: The digest is raw bytes ("V32"): numpy's "S32" drops trailing NULs on reading, which
#: cut the checksum of 1 part in 256 to 31 bytes.
PART_DTYPE = np.dtype([("sha256", "V32"), ("bytes", "<u8")])


#: Record a part's entry only while the job exists (a deleted job gets no key back).
_RECORD_PART = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SETRANGE', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def record_part(client: redis.Redis, job_id: str, index: int, data: bytes, *, ttl_s: int) -> None:
    """Remember the checksum and size of the part chunk ``index`` just wrote (the
    ``:parts`` key expires in ``ttl_s``)."""
    entry = np.array([(hashlib.sha256(data).digest(), len(data))], dtype=PART_DTYPE)
    keys = [key(job_id, "parts"), key(job_id)]
    offset = index * PART_DTYPE.itemsize
    client.eval(_RECORD_PART, 2, *keys, offset, entry.tobytes(), ttl_s)


def recall(client: redis.Redis, record: DatasetRecord, *, ttl_s: int) -> None:
    """Put back the checksums a finished job's manifest holds (Redis dropped them when
    the manifest was written), so a retry neither trusts nor re-hashes parts as they
    are now: a part changed since keeps its original checksum, and ``verify`` sees it."""
    if not parts.exists(record.output, parts.MANIFEST):
        return
    try:
        found = manifest.parse(parts.read(record.output, parts.MANIFEST))
    except manifest.ManifestError:
        return
    if found.job != record.id:
        return
    entries = np.zeros(record.total, dtype=PART_DTYPE)
    for entry in found.parts:
        index = int(entry.name[5:-8]) if parts.is_part(entry.name) else record.total
        if index < record.total:
            entries[index] = (bytes.fromhex(entry.sha256), entry.bytes)
    pipe = client.pipeline()
    pipe.set(key(record.id, "parts"), entries.tobytes())
    pipe.expire(key(record.id, "parts"), ttl_s)
    pipe.execute()


def recorded(client: redis.Redis, job_id: str, total: int) -> np.ndarray:
    """``total`` entries of :data:`PART_DTYPE` (zeros where nothing was recorded)."""
    raw = client.get(key(job_id, "parts")) or b""
    size = total * PART_DTYPE.itemsize
    raw = raw[:size] + bytes(max(0, size - len(raw)))
    return np.frombuffer(raw, dtype=PART_DTYPE)


def require_claim(client: redis.Redis, record: DatasetRecord, *, ttl_s: int) -> None:
    """Refuse to write into a destination this job no longer holds (taking it again,
    for ``ttl_s``, when nobody does)."""
    found = claims.holder(client, record.output)
    if found == (record.id, True):
        return
    if found is None and claims.take(client, record.output, record.id, False, ttl_s=ttl_s) is None:
        return  # a job submitted with no claim (an older producer), or its key expired
    now = "released" if found is None or found[0] == record.id else f"now job {found[0]}'s"
    raise PermanentError(
        f"{record.output} is no longer claimed by job {record.id} ({now}); nothing was written"
    )


def write_manifest(client: redis.Redis, record: DatasetRecord, *, ttl_s: int) -> None:
    """Check the destination against what the chunks wrote, clear strays, write the
    manifest. Raises :class:`PermanentError` naming parts that are missing or changed."""
    dest = record.output
    require_claim(client, record, ttl_s=ttl_s)
    found = parts.listing(dest)
    plan = chunks(client, record.id)
    sums = recorded(client, record.id, record.total)
    entries: list[manifest.PartEntry] = []
    problems: list[str] = []
    for index in range(record.total):
        name = parts.part_name(index)
        size = found.get(name)
        digest, nbytes = bytes(sums[index]["sha256"]), int(sums[index]["bytes"])
        if size is None:
            problems.append(f"{name} is missing")
            continue
        if nbytes == 0:  # not recorded (a part written before checksums were kept)
            data = parts.read(dest, name)
            digest, nbytes = hashlib.sha256(data).digest(), len(data)
        elif size != nbytes:
            problems.append(f"{name} is {size} bytes, its chunk wrote {nbytes}")
            continue
        first, rows = int(plan[index]["first_row"]), int(plan[index]["rows"])
        entries.append(manifest.PartEntry(name, first, rows, nbytes, digest.hex()))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise PermanentError(
            f"{dest} changed while job {record.id} ran: {'; '.join(problems[:3])}{more}; "
            f"run `embedfleet retry {record.id}` to rewrite them"
        )
    expected = {e.name for e in entries}
    strays = [n for n in found if (parts.is_part(n) and n not in expected) or parts.is_tmp(n)]
    if strays:
        log.warning("event=dataset_strays_removed job=%s dest=%s names=%s", record.id, dest, strays)
        parts.remove(dest, strays)
    raw = client.hgetall(key(record.id, "files"))
    files = [json.loads(v) for _, v in sorted(raw.items(), key=lambda kv: int(kv[0]))]
    body = manifest.build(
        record.id,
        record.model,
        record.version,
        record.dimension,
        record.n,
        str(record.spec.get("format", "")),
        str(record.spec.get("input", "")),
        files,
        entries,
        {
            **usage.totals(client, record.id),
            "options": record.spec.get("embed", {}),
            **quant_ranges.manifest_entry(client, record, record.dimension),
        },
    )
    parts.put(dest, parts.MANIFEST, body)


def end(client: redis.Redis, record: DatasetRecord, finished: bool = False, *, ttl_s: int) -> None:
    """The job ended (success or failure): remove local ``.part-*.tmp`` leftovers and
    release the destination (only while the job still holds it). ``finished``: the
    manifest holds the parts' checksums now, so Redis keeps them no longer (a failed
    job keeps them for its retry)."""
    if finished:
        client.delete(key(record.id, "parts"))
    if not claims.holds(client, record.output, record.id):
        return
    if not record.output.startswith("s3://"):
        try:
            leftovers = [n for n in parts.listing(record.output) if parts.is_tmp(n)]
            parts.remove(record.output, leftovers)
        except OSError as exc:  # the claim must still be released
            log.warning("event=tmp_sweep_failed dest=%s error=%s", record.output, exc)
    claims.release(client, record.output, record.id, ttl_s=ttl_s)
