"""Progress polling: short pauses first, so a small job is noticed as soon as it is done."""

from __future__ import annotations

from itertools import islice

from producers.gather import FIRST_POLL_S, poll_delays


def test_poll_pauses_double_from_the_first_up_to_the_cap() -> None:
    delays = list(islice(poll_delays(0.1, first=0.005), 8))

    assert delays == [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1]


def test_poll_pauses_start_at_the_module_default() -> None:
    assert next(poll_delays(1.0)) == FIRST_POLL_S < 0.1


def test_a_first_pause_above_the_cap_is_the_cap() -> None:
    assert list(islice(poll_delays(0.05, first=0.2), 3)) == [0.05, 0.05, 0.05]
