"""The wait loop both kinds of job run (producers.polling.Poller)."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from producers.polling import Poller, bar_for


def test_a_passed_deadline_raises_naming_the_job_and_its_progress() -> None:
    # Given a poller whose deadline has already passed
    with Poller("job-1", timeout=-1, cap=0.0) as poller:
        # When it is asked to pause, Then it gives up saying how far the job got
        with pytest.raises(TimeoutError, match=r"job job-1: 3 of 5 chunks done after -1 s"):
            poller.pause(3, 5)


def test_no_timeout_never_gives_up() -> None:
    with Poller("job-2", timeout=None, cap=0.0, first=0.0) as poller:
        for done in range(3):
            poller.pause(done, 3)  # returns: no deadline
    assert poller.deadline is None


def test_the_bar_follows_the_count_and_is_closed_however_the_wait_ends() -> None:
    bar = tqdm(total=10, file=io.StringIO())
    with pytest.raises(TimeoutError):
        with Poller("job-3", timeout=-1, cap=0.0, bar=bar) as poller:
            poller.show(4)
            assert bar.n == 4
            poller.show(4)
            poller.show(7)
            assert bar.n == 7
            poller.pause(7, 10)
    assert bar.disable  # closed on the way out of the raise


def test_no_bar_unless_asked() -> None:
    assert bar_for(False, 10, "row", "m", "0123456789") is None
    bar = bar_for(True, 10, "row", "m", "0123456789")
    try:
        assert bar.total == 10 and bar.desc == "m 01234567"
    finally:
        bar.close()
