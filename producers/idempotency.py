"""Idempotent submits: a retried ETL task gets the job its first try made.

``submit(..., idempotency_key=K)``: the first submit reserves ``K`` for its new job
(``tasks.jobs.idempotency``) with the digest of its request (model, version pinned,
the input, the output, the options that change the vectors). A later submit with ``K``
and the same digest gets that job back (running or finished) and queues nothing; with
another digest it is refused (exit 2), naming the key, the job and what differs.
Submits racing with one key make one job: ``SET NX`` picks the winner, the others wait
for its record to appear.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from producers.errors import UsageError
from tasks.contract.chunking import utf8_lengths
from tasks.contract.options import EmbedOptions
from tasks.jobs import idempotency, jobstore
from tasks.jobs.redis_retry import retry_while_unreachable

#: Seconds between looks at a racing submit's job record.
POLL_S = 0.02
#: Characters of an idempotency key at most (it is part of a Redis key).
MAX_KEY_CHARS = 256


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise UsageError(
            f"idempotency key {key[:40]!r}: give 1 to {MAX_KEY_CHARS} printable characters"
        )
    return key


def _hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def _options(options: dict[str, Any]) -> str:
    return _hash(json.dumps(options, sort_keys=True, default=str).encode())


def texts_digest(texts: Sequence[str]) -> str:
    """A hash of the texts, in order (their lengths keep boundaries unambiguous)."""
    lengths = utf8_lengths(list(texts)).astype("<i8")
    return _hash(lengths.tobytes(), "".join(texts).encode("utf-8", "surrogatepass"))


def files_digest(files: Sequence[Any]) -> str:
    """A hash of a dataset's files as listed now: URL, size and (local) mtime."""
    listed = []
    for f in files:
        mtime = 0
        if not f.url.startswith("s3://"):
            try:
                mtime = os.stat(f.url).st_mtime_ns
            except OSError:
                mtime = -1
        listed.append([f.url, f.size, mtime])
    return _hash(json.dumps(listed).encode())


def digest(
    model: str, version: str, input_hash: str, output: str, options: dict[str, Any]
) -> dict[str, str]:
    """The request's digest, part by part (so a refusal can say which part differs)."""
    return {
        "model": model,
        "version": version,
        "input": input_hash,
        "output": output,
        "options": _options(options),
    }


def existing_or_claim(
    client: Any,
    key: str,
    job_id: str,
    announce: Any,
    request: tuple[str, str, str, str],
    embed: EmbedOptions,
    /,
    **options: Any,
) -> Any | None:
    """The one place a submit's digest is built and its key claimed: ``request`` is
    (model as asked, version pinned, input hash, output), ``embed`` the embedding
    options and ``options`` the others that shape the job (chunking, cache, fields; an
    A/B ``key`` among them: the parameters before are positional, so the names don't meet).
    Returns None when this submit goes ahead as ``job_id``, else the job the key already
    names for the same request, announced like a new one. Raises :class:`UsageError`
    when the key holds another request."""
    model, version, input_hash, output = request
    wanted = digest(model, version, input_hash, output, {**options, "embed": embed.to_wire()})
    held = claim(client, key, job_id, wanted)
    return None if held is None else existing_job(client, held, announce)


def claim(client: Any, key: str, job_id: str, wanted: dict[str, str]) -> str | None:
    """Reserve ``key`` for ``job_id``: None when this submit goes ahead, else the id of
    the job already made with the same request. Raises :class:`UsageError` when the
    key holds another request."""
    redis, ttl = client.redis, client.settings.result_ttl_s
    while True:
        found = retry_while_unreachable(
            lambda: idempotency.reserve(redis, key, job_id, wanted, ttl)
        )
        if found is None:
            return None
        if found.digest != wanted:
            differs = ", ".join(p for p in wanted if found.digest.get(p) != wanted[p])
            raise UsageError(
                f"idempotency key {key!r} is held by job {found.job_id}, submitted with "
                f"another request ({differs} differ); use another key, or "
                f"`embedfleet delete {found.job_id}` to free it"
            )
        if _wait_for_record(redis, found):
            return found.job_id
        # Its submit died before recording the job: take the key over (once it is stale).
        if idempotency.take_over(redis, key, found, job_id, wanted, ttl):
            return None


def _wait_for_record(redis: Any, found: idempotency.Holder) -> bool:
    """Wait until the holder's job is recorded (True), or its reservation is stale."""
    deadline = found.reserved + idempotency.RESERVE_GRACE_S
    while True:
        if redis.exists(jobstore.PREFIX + found.job_id):
            return True
        if time.time() > deadline:
            return False
        time.sleep(POLL_S)


def attach(client: Any, key: str, job_id: str) -> None:
    """The job is recorded: its hash names the key, and they expire together."""
    redis, ttl = client.redis, client.settings.result_ttl_s
    retry_while_unreachable(lambda: idempotency.attach(redis, job_id, key, ttl))


def release(client: Any, key: str, job_id: str) -> None:
    """The submit failed before recording its job: free the key for the next try."""
    try:
        idempotency.free(client.redis, key, job_id)
    except Exception:  # Redis away: the reservation goes stale and is taken over
        pass


def existing_job(client: Any, job_id: str, announce: Any) -> Any:
    """The job a key already names, announced like a new one."""
    if announce is not None:
        announce(job_id)
    return client.job(job_id)
