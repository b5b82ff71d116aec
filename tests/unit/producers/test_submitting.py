"""A list job whose submit stopped (producer died, Redis gone) reads as FAILURE once its
submit heartbeat is older than the grace period; never PENDING for ever."""

from __future__ import annotations

import time

from producers.submitting import SUBMIT_GRACE_S, submit_stalled


class Hash:
    def __init__(self, **fields: str) -> None:
        self.fields = {k: v.encode() for k, v in fields.items()}

    def hmget(self, key: str, names: list[str]) -> list[bytes | None]:
        return [self.fields.get(n) for n in names]


def test_stalled_submit_is_named() -> None:
    old = repr(time.time() - SUBMIT_GRACE_S - 5)
    assert "run `embedfleet retry j`" in (submit_stalled(Hash(beat=old), "j", "PENDING") or "")
    assert submit_stalled(Hash(beat=old), "j", "RUNNING")


def test_a_live_finished_or_unmarked_submit_is_not_stalled() -> None:
    old = repr(time.time() - SUBMIT_GRACE_S - 5)
    assert submit_stalled(Hash(beat=repr(time.time())), "j", "PENDING") is None
    assert submit_stalled(Hash(beat=old, submitted=old), "j", "PENDING") is None
    assert submit_stalled(Hash(), "j", "PENDING") is None  # sent by code without a beat
    assert submit_stalled(Hash(beat=old), "j", "SUCCESS") is None
