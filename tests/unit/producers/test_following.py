"""producers.following: the unserved watch says once when the model loses its last live
worker and once when one is back; the Ctrl-C line names the job and the commands."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

from producers.following import UnservedWatch, interrupted_text
from tasks.contract import catalog


class _Catalog:
    """The catalog hash over a dict (live_workers' one Redis call)."""

    def __init__(self) -> None:
        self.raw: dict[bytes, bytes] = {}

    def serve(self, worker: str, model: str) -> None:
        entry = {"worker": worker, "heartbeat": time.time(), "served": [model]}
        self.raw[worker.encode()] = json.dumps(entry).encode()

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        assert key == catalog.CATALOG_KEY
        return self.raw


def test_the_watch_speaks_on_each_change_only():
    fake, said = _Catalog(), []
    fake.serve("w1", "m")
    watch = UnservedWatch(fake, "m", "job1", tell=said.append)
    watch.check_once()
    assert said == []  # served: nothing to say
    fake.raw.clear()
    watch.check_once()
    watch.check_once()
    assert len(said) == 1 and "no live worker serves m" in said[0] and "job1" in said[0]
    fake.serve("w2", "other")  # a worker of another model is no help
    watch.check_once()
    assert len(said) == 1
    fake.serve("w3", "m")
    watch.check_once()
    assert said[1] == "embedfleet: w3 serves m again"


def test_a_warning_given_at_submit_is_not_repeated():
    said: list[str] = []
    UnservedWatch(_Catalog(), "m", "job1", warned=True, tell=said.append).check_once()
    assert said == []


def test_the_interrupt_line_names_the_job_and_how_to_pick_it_up():
    listed = interrupted_text(SimpleNamespace(id="j1", kind="list"))
    assert "job j1 goes on" in listed and "embedfleet status j1" in listed
    assert "embedfleet result j1 --output FILE" in listed
    dataset = interrupted_text(SimpleNamespace(id="j2", kind="dataset", output="/out/"))
    assert "embedfleet status j2" in dataset and "/out/" in dataset
