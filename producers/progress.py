"""Progress a person reads: a job's times, rows done and ETA, for list and dataset jobs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tasks.jobs import jobstore


def eta_s(
    rows: int, rows_done: int, started: float | None, state: str, now: float | None = None
) -> float | None:
    """Seconds until a running job is done at the rate it has kept since it started
    (None before the first rows are done, or once it is not running)."""
    if state != "RUNNING" or not started or rows_done <= 0:
        return None
    now = time.time() if now is None else now
    rate = rows_done / max(1e-6, now - started)
    return round((rows - rows_done) / rate, 1)


def list_progress(
    redis: Any, record: jobstore.JobRecord, done: set[int], state: str
) -> dict[str, Any]:
    """``created``, ``started``, ``finished`` (epoch seconds or None), ``rows_done`` and
    ``eta_s`` of a list job whose chunks ``done`` are finished."""
    started, finished = jobstore.times(redis, record.id)
    sizes = np.diff(record.bounds)
    rows_done = int(sizes[sorted(done)].sum()) if done else 0
    return {
        "created": record.created,
        "started": started,
        "finished": finished,
        "rows_done": rows_done,
        "eta_s": eta_s(record.n, rows_done, started, state),
    }


def when(t: float | None) -> str:
    """A local time a person reads, or ``-``."""
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def eta_text(s: dict[str, Any]) -> str:
    return "-" if s.get("eta_s") is None else f"{s['eta_s']:.0f} s"
