"""This process's events: what emitters use when no :class:`Events` is passed in.

It starts with the log subscriber; the metrics endpoint subscribes when it starts
(``workers.observability.endpoint``).
"""

from __future__ import annotations

import threading

from workers.observability.event_log import LogSubscriber
from workers.observability.events import Events

_events: Events | None = None
_lock = threading.Lock()


def process_events() -> Events:
    """The process-wide events, built with a :class:`LogSubscriber` on first use."""
    global _events
    if _events is None:
        with _lock:
            if _events is None:
                _events = Events([LogSubscriber()])
    return _events
