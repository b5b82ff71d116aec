"""tasks.contract.catalog.live_workers: fresh heartbeats only, filtered by served model."""

from __future__ import annotations

import json

from tasks.contract import catalog


class _Hash:
    """The one Redis call live_workers makes, over a dict (no server needed)."""

    def __init__(self, entries: dict[str, dict]) -> None:
        self.raw = {k.encode(): json.dumps(v).encode() for k, v in entries.items()}

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        assert key == catalog.CATALOG_KEY
        return self.raw


def test_only_fresh_workers_serving_the_model_count() -> None:
    now = 1_000.0
    fake = _Hash(
        {
            "w1": {"worker": "w1", "heartbeat": now - 1, "served": ["a", "b"]},
            "w2": {"worker": "w2", "heartbeat": now - catalog.LIVE_S - 1, "served": ["a"]},
            "w3": {"worker": "w3", "heartbeat": now, "served": ["b"]},
        }
    )
    fake.raw[b"junk"] = b"not json"
    assert catalog.live_workers(fake, now=now) == ["w1", "w3"]  # type: ignore[arg-type]
    assert catalog.live_workers(fake, "a", now=now) == ["w1"]  # type: ignore[arg-type]
    assert catalog.live_workers(fake, "c", now=now) == []  # type: ignore[arg-type]


def test_a_worker_with_a_shorter_lapse_is_fresh_for_its_own_live_s() -> None:
    now = 1_000.0
    fake = _Hash(
        {
            # published live_s=10: dead 11 s after its last beat, alive 9 s after
            "short-dead": {
                "worker": "short-dead",
                "heartbeat": now - 11,
                "live_s": 10.0,
                "served": ["a"],
                "concurrency": 2,
            },
            "short-live": {
                "worker": "short-live",
                "heartbeat": now - 9,
                "live_s": 10.0,
                "served": ["a"],
                "concurrency": 3,
            },
            # none published, or a longer one: LIVE_S holds
            "old": {"worker": "old", "heartbeat": now - catalog.LIVE_S + 1, "served": ["a"]},
            "long": {
                "worker": "long",
                "heartbeat": now - catalog.LIVE_S - 1,
                "live_s": 300,
                "served": ["a"],
            },
        }
    )
    assert catalog.live_workers(fake, "a", now=now) == ["old", "short-live"]  # type: ignore[arg-type]
    assert catalog.live_threads(fake, "a", now=now) == 4  # type: ignore[arg-type]
    assert catalog.is_fresh({"heartbeat": now - 11, "live_s": 10}, now) is False
    assert catalog.is_fresh({"heartbeat": now - 11}, now) is True
