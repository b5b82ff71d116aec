"""The state of a dataset job, from its counters alone."""

from __future__ import annotations

from dataclasses import replace

from tasks.jobs.datasets import SUBMIT_GRACE_S, DatasetRecord, state_of

BASE = DatasetRecord("j", "m", "v", "", n=100, total=10, created=1000.0, spec={}, submitted=True)


def test_states() -> None:
    now = 1001.0
    assert state_of(BASE, 0, now) == "PENDING"
    assert state_of(replace(BASE, started=1000.5), 0, now) == "RUNNING"
    assert state_of(replace(BASE, done=9), 0, now) == "RUNNING"
    # every chunk done is not yet SUCCESS: the manifest makes it so
    assert state_of(replace(BASE, done=10), 0, now) == "RUNNING"
    assert state_of(replace(BASE, done=10, finished=1001.0), 0, now) == "SUCCESS"
    assert state_of(replace(BASE, done=9), 1, now) == "FAILURE"
    assert state_of(replace(BASE, done=8), 1, now) == "RUNNING"
    assert state_of(replace(BASE, cancelled=True, done=3), 0, now) == "CANCELLED"


def test_a_submit_that_never_finished_is_a_failure_not_pending_for_ever() -> None:
    unsent = replace(BASE, submitted=False)
    assert state_of(unsent, 0, BASE.created + 1) == "PENDING"
    assert state_of(unsent, 0, BASE.created + SUBMIT_GRACE_S + 1) == "FAILURE"
    assert state_of(replace(BASE, submit_error="Redis down"), 0, BASE.created + 1) == "FAILURE"
