"""A dataset job owns its destination (docs/DATASETS.md, "Who owns DEST").

Before anything is queued, a destination holding parts or a manifest is refused unless
the caller passed ``overwrite`` (then they are removed first), and a destination a live
job is writing is refused whatever the flag. The claim itself is a Redis key
(``tasks.jobs.claims``).
"""

from __future__ import annotations

from typing import Any

from producers.errors import UsageError
from tasks.io import manifest, parts
from tasks.jobs import claims


def _what_is_there(dest: str) -> str | None:
    """What of a job's output ``dest`` holds, in words, or None when it holds none."""
    found = parts.listing(dest)
    count = sum(1 for name in found if parts.is_part(name))
    held = []
    if count:
        held.append(f"{count} part" + ("s" if count != 1 else ""))
    if parts.MANIFEST in found:
        job = manifest.job_of(parts.read(dest, parts.MANIFEST))
        held.append(f"the manifest of job {job}" if job else "a manifest naming no job")
    elif count:
        held[0] += " (and no manifest: a job that did not finish)"
    return " and ".join(held) or None


def _refuse_live(redis: Any, dest: str, job_id: str | None) -> None:
    found = claims.holder(redis, dest)
    if found is None or not found[1] or found[0] == job_id:
        return
    state = claims.live_state(redis, found[0])
    if state is not None:
        raise UsageError(
            f"{dest} is being written by job {found[0]} ({state}); wait for it to end or "
            f"`embedfleet cancel {found[0]}` (two jobs never write one destination)"
        )


def check(redis: Any, dest: str, overwrite: bool) -> None:
    """Refuse ``dest`` now, before the input is scanned (nothing is changed here)."""
    _refuse_live(redis, dest, None)
    what = _what_is_there(dest)
    if what and not overwrite:
        raise UsageError(_OCCUPIED.format(dest=dest, what=what))


def take(redis: Any, dest: str, job_id: str, overwrite: bool, *, ttl_s: int) -> None:
    """Claim ``dest`` for ``job_id`` (for ``ttl_s``, as the job's records), then refuse
    it (releasing the claim) or clear it."""
    other = claims.take(redis, dest, job_id, ttl_s=ttl_s)
    if other is not None:
        _refuse_live(redis, dest, job_id)
        raise UsageError(f"{dest} is being written by job {other}")  # it ended just now
    try:
        what = _what_is_there(dest)
        if what and not overwrite:
            raise UsageError(_OCCUPIED.format(dest=dest, what=what))
        if what:
            clear(dest)
    except BaseException:
        claims.release(redis, dest, job_id, ttl_s=ttl_s)
        raise


def clear(dest: str) -> None:
    """Remove the parts, the manifest and part temporaries from ``dest``."""
    names = [
        n for n in parts.listing(dest) if parts.is_part(n) or parts.is_tmp(n) or n == parts.MANIFEST
    ]
    # the manifest first: no manifest may list parts that are being removed
    parts.remove(dest, [n for n in names if n == parts.MANIFEST])
    parts.remove(dest, [n for n in names if n != parts.MANIFEST])


def retake(redis: Any, dest: str, job_id: str, *, ttl_s: int) -> None:
    """Claim ``dest`` again for a retry of ``job_id``: refused when another job has
    taken it since (its output may be there now)."""
    other = claims.take(redis, dest, job_id, takeover=False, ttl_s=ttl_s)
    if other is None:
        data = parts.read(dest, parts.MANIFEST) if parts.exists(dest, parts.MANIFEST) else None
        named = manifest.job_of(data) if data is not None else job_id
        if named == job_id:
            return
        claims.release(redis, dest, job_id, ttl_s=ttl_s)
        other = named or "unknown"
    raise UsageError(
        f"{dest} has been written by job {other} since job {job_id} ran there: a retry "
        f"would mix the two; submit the job again (with --overwrite)"
    )


def release(redis: Any, dest: str, job_id: str, *, ttl_s: int) -> None:
    claims.release(redis, dest, job_id, ttl_s=ttl_s)


_OCCUPIED = "{dest} holds {what}; pass --overwrite (overwrite=True) to replace them"
