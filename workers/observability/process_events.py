"""Events for an emitter built without any: logged, heard by nothing else.

A worker's runtime builds its :class:`Events` once (``workers.serving.runtime``) and its
boot hands the same object to the model cache, the watchdog, the chunk signals and the
metrics endpoint; an object built alone (a test, a script) gets its own from here.
"""

from __future__ import annotations

from workers.observability.event_log import LogSubscriber
from workers.observability.events import Events


def logged_events() -> Events:
    """New :class:`Events` with a :class:`LogSubscriber` (each call its own)."""
    return Events([LogSubscriber()])
