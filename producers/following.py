"""What the CLI says while a job waits: no live worker serves its model, and Ctrl-C.

A job for a model no live worker serves (no fresh heartbeat in the fleet catalog,
``tasks.contract.catalog.live_workers``) is still queued, as an ETL run wants: it runs
when a worker starts. But the user is told, at ``submit`` and again while ``--wait``
waits when the last worker serving the model goes away, instead of a progress bar that
stands still. Ctrl-C while waiting stops the waiting, not the job: the job id and the
commands that pick it up again are printed, and the CLI exits 130.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from redis.exceptions import RedisError

from tasks.contract import catalog

#: Seconds between two looks at the catalog while a job waits.
CHECK_S = 2.0


def say(line: str) -> None:
    """One line on stderr, above a progress bar when one is drawn."""
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(line, file=sys.stderr)


def unserved_text(model: str, job_id: str) -> str:
    return (
        f"embedfleet: no live worker serves {model} (none has a heartbeat from the last "
        f"{catalog.LIVE_S:.0f} s, or its shorter lapse): job {job_id} waits in its queue "
        f"until one starts "
        f"(`embedfleet up`, or `embedfleet worker --models {model}`)"
    )


def warn_if_unserved(redis: Any, model: str, job_id: str) -> bool:
    """Say so when no live worker serves ``model``; True when it was said."""
    try:
        live = catalog.live_workers(redis, model)
    except RedisError:
        return False  # Redis trouble is the job's own calls' to report
    if not live:
        say(unserved_text(model, job_id))
    return not live


class UnservedWatch:
    """Says once when ``model`` has no live worker, and once when one is back.

    ``check_once()`` is one look (the tests call it); :meth:`run` looks every
    ``interval`` seconds until ``stop`` is set."""

    def __init__(
        self,
        redis: Any,
        model: str,
        job_id: str,
        warned: bool = False,
        tell: Callable[[str], None] = say,
    ) -> None:
        self.redis, self.model, self.job_id = redis, model, job_id
        self.unserved = warned
        self.tell = tell

    def check_once(self) -> None:
        try:
            live = catalog.live_workers(self.redis, self.model)
        except RedisError:
            return
        if not live and not self.unserved:
            self.tell(unserved_text(self.model, self.job_id))
        elif live and self.unserved:
            self.tell(f"embedfleet: {live[0]} serves {self.model} again")
        self.unserved = not live

    def run(self, stop: threading.Event, interval: float = CHECK_S) -> None:
        while not stop.wait(interval):
            self.check_once()


def interrupted_text(job: Any) -> str:
    """What Ctrl-C while waiting on ``job`` leaves, and how to pick it up."""
    follow = f"follow it with `embedfleet status {job.id}`"
    if getattr(job, "kind", "list") == "dataset":
        fetch = f"its parts go to {job.output}"
    else:
        fetch = f"write it with `embedfleet result {job.id} --output FILE`"
    return (
        f"embedfleet: interrupted: job {job.id} goes on in the fleet; {follow}, {fetch} "
        f"(`embedfleet cancel {job.id}` stops it)"
    )


@contextlib.contextmanager
def waiting(job: Any) -> Iterator[None]:
    """Around the CLI's wait on ``job`` (just submitted): one line now when no live
    worker serves its model, the unserved watch in a daemon thread, and the Ctrl-C line
    (the KeyboardInterrupt goes on to ``main``, which exits 130)."""
    stop = threading.Event()
    try:
        warned = warn_if_unserved(job.client.redis, job.model, job.id)  # queued anyway
        watch = UnservedWatch(job.client.redis, job.model, job.id, warned)
        threading.Thread(target=watch.run, args=(stop,), daemon=True, name="unserved").start()
        yield
    except KeyboardInterrupt:
        print(interrupted_text(job), file=sys.stderr, flush=True)
        raise
    finally:
        stop.set()
