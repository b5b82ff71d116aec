"""Progress polling: short pauses first, so a small job is noticed as soon as it is done."""

from __future__ import annotations

from itertools import islice

import pytest

from producers.gather import FIRST_POLL_S, poll_delays


def test_poll_pauses_grow_from_the_first_up_to_the_cap() -> None:
    delays = list(islice(poll_delays(0.1, first=0.01), 9))

    assert delays == pytest.approx(
        [0.01, 0.015, 0.0225, 0.03375, 0.050625, 0.0759375, 0.1, 0.1, 0.1]
    )


def test_poll_pauses_start_at_the_module_default() -> None:
    assert next(poll_delays(1.0)) == FIRST_POLL_S < 0.1


def test_a_first_pause_above_the_cap_is_the_cap() -> None:
    assert list(islice(poll_delays(0.05, first=0.2), 3)) == [0.05, 0.05, 0.05]
