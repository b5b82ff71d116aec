"""One UnknownModelError: a usage error at submit, a permanent chunk failure in a worker."""

from __future__ import annotations

import producers
import producers.errors
import workers.errors
from tasks.contract.errors import PermanentError, UnknownModelError, UsageError


def test_producers_and_workers_name_the_same_class() -> None:
    assert producers.UnknownModelError is producers.errors.UnknownModelError
    assert producers.errors.UnknownModelError is workers.errors.UnknownModelError
    assert UnknownModelError is workers.errors.UnknownModelError


def test_it_is_refused_at_submit_and_never_retried_in_a_worker() -> None:
    assert issubclass(UnknownModelError, UsageError)  # the CLI's exit 2
    assert issubclass(UnknownModelError, PermanentError)  # the chunk fails, not retried
