import pytest

from tasks.jobs.jobstore import state_of


@pytest.mark.parametrize(
    ("args", "state"),
    [
        ((3, 0, 0, False, False), "PENDING"),
        ((3, 0, 0, False, True), "RUNNING"),
        ((3, 1, 0, False, False), "RUNNING"),
        ((3, 3, 0, False, False), "SUCCESS"),
        ((3, 2, 1, False, True), "FAILURE"),
        ((3, 1, 1, False, True), "RUNNING"),
        ((3, 1, 0, True, True), "CANCELLED"),
        ((3, 3, 0, True, True), "SUCCESS"),
    ],
)
def test_state_of(args, state):
    assert state_of(*args) == state
