"""This process's event hub, and events for an emitter built alone.

:func:`process_events` is the hub a worker's runtime uses unless it is handed another
(``Runtime(events=...)``); the boot hands that one object on to the watchdog, the chunk
signals and the metrics endpoint, and a plugin subscribes to it (README:
``process_events().subscribe(it)``). One per process on purpose: that extension point is
a plain function, with no worker object to reach. An emitter built alone (a test, a
script) gets :func:`logged_events` instead.
"""

from __future__ import annotations

from workers.observability.event_log import LogSubscriber
from workers.observability.events import Events

#: The hub (an object, not a setting: building it reads nothing).
_HUB = Events([LogSubscriber()])


def process_events() -> Events:
    """This process's hub, with a :class:`LogSubscriber`."""
    return _HUB


def logged_events() -> Events:
    """New :class:`Events` with a :class:`LogSubscriber` (each call its own)."""
    return Events([LogSubscriber()])
