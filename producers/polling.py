"""The wait loop both kinds of job run: poll, show progress, give up at a deadline.

``ListJob.wait`` and ``DatasetJob.wait`` each decide what a poll reads and when the job
has ended; the pauses between polls, the progress bar and the deadline are here::

    with Poller(job.id, timeout, cap=POLL_S, bar=bar_for(...)) as poller:
        while True:
            ...                                   # read progress; return when ended
            poller.show(count)
            poller.pause(done, total)             # TimeoutError past the deadline
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from producers.gather import poll_delays


def bar_for(enabled: bool, total: int, unit: str, model: str, job_id: str) -> Any:
    """A progress bar of ``total`` ``unit``s named for the job, or None."""
    if not enabled:
        return None
    from tqdm import tqdm  # only when a bar is shown

    return tqdm(total=total, unit=unit, desc=f"{model} {job_id[:8]}")


class Poller:
    """Pauses between the polls of one job's ``wait``, its progress bar and deadline.

    Pauses start at ``first`` (default ``producers.gather.FIRST_POLL_S``) and grow up
    to ``cap`` seconds; ``timeout`` None waits for ever. Used as a context manager, so
    the bar is closed however the wait ends.
    """

    def __init__(
        self,
        job_id: str,
        timeout: float | None,
        cap: float,
        first: float | None = None,
        bar: Any = None,
    ) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.bar = bar
        self._delays = poll_delays(cap, first)

    def __enter__(self) -> Poller:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()

    def show(self, count: int) -> None:
        """Move the bar to ``count`` (chunks or rows done so far)."""
        if self.bar is not None and count != self.bar.n:
            self.bar.update(count - self.bar.n)

    def pause(self, done: int, total: int) -> None:
        """Sleep until the next poll; raises ``TimeoutError`` (saying ``done`` of
        ``total`` chunks were done) once the deadline has passed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError(
                f"job {self.job_id}: {done} of {total} chunks done after {self.timeout} s"
            )
        time.sleep(next(self._delays))
