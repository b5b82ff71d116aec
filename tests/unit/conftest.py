"""Unit-test guard: no ``event=`` line leaves the packages without its fields.

Every record that reaches the root logger during a unit test is looked at; one whose
message starts with ``event=`` but carries no ``fields`` (it went through a plain
``logging.getLogger`` rather than ``tasks.contract.logs.event_logger``) fails the test
that logged it, naming the line. ``tests/unit/test_event_lines.py`` checks the same on
the source.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class UnfieldedEvents(logging.Handler):
    """Collects ``event=`` records logged without ``extra={"fields": ...}``."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.missing: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        fields = getattr(record, "fields", None)
        if message.startswith("event=") and not (
            isinstance(fields, dict) and f"event={fields.get('event')}" == message.split(" ")[0]
        ):
            self.missing.append(f"{record.pathname}:{record.lineno}: {message[:80]}")


@pytest.fixture(autouse=True)
def event_lines_carry_fields() -> Iterator[UnfieldedEvents]:
    guard = UnfieldedEvents()
    root = logging.getLogger()
    root.addHandler(guard)
    try:
        yield guard
    finally:
        root.removeHandler(guard)
    assert guard.missing == [], "event= lines logged without their fields:\n" + "\n".join(
        guard.missing
    )
