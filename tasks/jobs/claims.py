"""Who owns a dataset destination: one Redis key per destination, changed atomically.

``embedfleet:dest:<normalized DEST>`` holds the id of the job writing there while it is
live, and ``ended:<id>`` once that job has ended (success, failure, cancel, delete):
the key keeps naming the last job that wrote the folder, so a ``retry`` of an older job
cannot write over a newer one's output. It expires with the job's keys
(``EMBEDFLEET_RESULT_TTL_S`` after it was last taken).

Why a Redis key and not a ``_claim.json`` beside the parts: taking a destination is
``SET NX``, and taking over a claim whose job has ended is a compare-and-set in one Lua
script, both atomic on the one server every producer and worker of a fleet shares, for a
folder and an S3 prefix alike. A file would need an atomic compare-and-replace for the
takeover, which neither ``O_EXCL`` (create only) nor a plain S3 PUT gives; and nothing is
left in the folder when a job ends. The scope is one fleet: two fleets with two Redis
servers writing one destination are not kept apart.

Workers check the claim before each part and before the manifest (one GET): a chunk of
a job whose destination was taken over writes nothing.
"""

from __future__ import annotations

import redis

from tasks.jobs import datasets, jobstore

PREFIX = "embedfleet:dest:"
ENDED = "ended:"
#: States of a job that still writes its destination.
LIVE_STATES = ("PENDING", "RUNNING")

_TAKE = """
local v = redis.call('GET', KEYS[1])
if (v == false and ARGV[2] == '') or v == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def key(dest: str) -> str:
    return PREFIX + dest


def holder(client: redis.Redis, dest: str) -> tuple[str, bool] | None:
    """``(job id, live claim)`` of the last job that took ``dest``, or None."""
    raw = client.get(key(dest))
    if raw is None:
        return None
    value = raw.decode() if isinstance(raw, bytes) else str(raw)
    if value.startswith(ENDED):
        return value[len(ENDED) :], False
    return value, True


def live_state(client: redis.Redis, job_id: str) -> str | None:
    """The state of dataset job ``job_id`` when it is still live, else None (ended, or
    its records are gone)."""
    record = datasets.load(client, job_id)
    if record is None:
        return None
    _, failed = jobstore.progress(client, job_id)
    state = datasets.state_of(record, len(failed))
    return state if state in LIVE_STATES else None


def take(
    client: redis.Redis, dest: str, job_id: str, takeover: bool = True, *, ttl_s: int
) -> str | None:
    """Claim ``dest`` for ``job_id``; returns None when it is now the job's, else the id
    of the job that keeps it: a live one, or (``takeover=False``, for a retry) any other
    job that wrote there since. A claim whose job has ended or whose records are gone is
    stale and is taken over (atomically: of two jobs taking it at once, one wins). The
    claim lasts ``ttl_s`` (``EMBEDFLEET_RESULT_TTL_S``, as the job's records)."""
    for _ in range(8):  # each turn, someone else changed the key in between
        raw = client.get(key(dest))
        current = "" if raw is None else (raw.decode() if isinstance(raw, bytes) else raw)
        if current in (job_id, ENDED + job_id):
            pass
        elif current:
            other = current.removeprefix(ENDED)
            if not takeover:
                return other
            if not current.startswith(ENDED) and live_state(client, other) is not None:
                return other
        if client.eval(_TAKE, 1, key(dest), job_id, current, ttl_s):
            return None
    raise RuntimeError(f"{dest}: the destination's claim kept changing; try again")


def release(client: redis.Redis, dest: str, job_id: str, *, ttl_s: int) -> bool:
    """End ``job_id``'s claim on ``dest`` (if it holds it); the key keeps its name, for
    ``ttl_s``."""
    return bool(client.eval(_RELEASE, 1, key(dest), job_id, ENDED + job_id, ttl_s))


def holds(client: redis.Redis, dest: str, job_id: str) -> bool:
    """True when ``job_id`` holds a live claim on ``dest``."""
    return holder(client, dest) == (job_id, True)
