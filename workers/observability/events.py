"""What happens in a worker, as typed events, and the one hook that delivers them.

Modelled on dramatiq's middleware: the model cache, the memory watchdog and the chunk
path *emit* an event (a frozen dataclass below); every *subscriber* gets it through the
method named for it (``on_model_loaded(event)``, ...). A subscriber overrides only the
methods it cares about: :class:`Subscriber` has a no-op for each. Logs
(``workers.observability.event_log``) and Prometheus metrics
(``workers.observability.metrics``) are two subscribers; nothing reads log text back.

Emitters take an :class:`Events` in their constructor: a worker's runtime holds one (the
process's hub, ``workers.observability.process_events.process_events``, unless given
another) and its boot passes it to every emitter and subscriber (tests pass their own);
an emitter built alone logs only (``process_events.logged_events``).
Delivery is synchronous, in the emitting thread (the chunk path relies on that to subtract a load
from a chunk's encode time). A subscriber that raises is logged and skipped: an
observer never breaks a load, an eviction or a chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from tasks.contract.logs import event_logger

log = event_logger(__name__)


@dataclass(frozen=True)
class ModelLoaded:
    """A model was built and warmed up by the model cache (RAM in GB, time in s)."""

    name: ClassVar[str] = "model_loaded"
    model: str
    type: str
    seconds: float
    ram_gb_config: float
    ram_gb_measured: float
    #: How ``ram_gb_measured`` was measured: tensors, initializers, objects, rss, remote.
    ram_method: str
    ram_gb: float
    used_gb_before: float
    used_gb_after: float
    budget_gb: float
    rss_gb_before: float
    rss_gb_after: float
    models_loaded: int
    #: The precision the model runs in (``workers.models.fidelity``); None when n/a.
    precision: str | None = None


@dataclass(frozen=True)
class ModelEvicted:
    """An idle model was unloaded to make room (budget, admission or watchdog)."""

    name: ClassVar[str] = "model_evicted"
    model: str
    reason: str
    ram_gb: float
    ram_gb_measured: float
    policy: str
    required_gb: float
    used_gb_before: float
    used_gb_after: float
    budget_gb: float
    rss_gb_before: float
    rss_gb_after: float


@dataclass(frozen=True)
class ModelUnloaded:
    """A model was unloaded other than by eviction (a reload removed or replaced it)."""

    name: ClassVar[str] = "model_unloaded"
    model: str
    reason: str
    ram_gb: float
    ram_gb_measured: float
    rss_gb_before: float
    rss_gb_after: float


@dataclass(frozen=True)
class ModelRetired:
    """A reload dropped a model still in use: it goes when its last lease ends."""

    name: ClassVar[str] = "model_retired"
    model: str
    reason: str
    leases: int


@dataclass(frozen=True)
class ModelStillReferenced:
    """After an unload, something outside the cache still held the model object."""

    name: ClassVar[str] = "model_still_referenced"
    model: str
    referrers: tuple[str, ...]


@dataclass(frozen=True)
class WatchdogStarted:
    """The memory watchdog thread started."""

    name: ClassVar[str] = "watchdog_started"
    interval_s: float
    floor_gb: float
    budget_gb: float


@dataclass(frozen=True)
class WatchdogShort:
    """A watchdog check found memory short (and what it evicted, if anything).

    ``stuck`` is true when nothing could be evicted (every loaded model in use).
    """

    name: ClassVar[str] = "watchdog_short"
    reasons: tuple[str, ...]
    used_gb_before: float
    used_gb_after: float
    budget_gb: float
    available_gb_before: float
    available_gb_after: float
    floor_gb: float
    evicted: tuple[str, ...]
    loaded: tuple[str, ...]
    stuck: bool


@dataclass(frozen=True)
class WatchdogRecovered:
    """Memory is fine again after a check that could evict nothing."""

    name: ClassVar[str] = "watchdog_recovered"
    used_gb: float
    available_gb: float


@dataclass(frozen=True)
class ChunkFinished:
    """A chunk task ended in this worker.

    ``status``: ``ok``, ``failed``, ``retry``, ``cancelled`` or ``revoked``. ``seconds``
    is the run time of a successful chunk less any model load it ran itself (None for
    the other outcomes).
    """

    name: ClassVar[str] = "chunk_finished"
    model: str
    status: str
    texts: tuple[str, ...]
    seconds: float | None = None
    #: ``list`` (texts on the wire) or ``dataset`` (rows read from the input by the worker).
    kind: str = "list"


@dataclass(frozen=True)
class TextsEncoded:
    """The runtime encoded ``texts`` with ``model`` for the chunk running in this thread
    (emitted in that thread, so the chunk's observer can count what a dataset chunk read
    from its input: its message carries no texts)."""

    name: ClassVar[str] = "texts_encoded"
    model: str
    texts: tuple[str, ...]


@dataclass(frozen=True)
class MessageRefused:
    """A queue message was refused without running (malformed envelope, body or headers)."""

    name: ClassVar[str] = "message_refused"


Event = (
    ModelLoaded
    | ModelEvicted
    | ModelUnloaded
    | ModelRetired
    | ModelStillReferenced
    | WatchdogStarted
    | WatchdogShort
    | WatchdogRecovered
    | ChunkFinished
    | TextsEncoded
    | MessageRefused
)


class Subscriber:
    """Base of every subscriber: one no-op hook per event; override what you need."""

    def on_model_loaded(self, event: ModelLoaded) -> None:
        """Called after a model was loaded."""

    def on_model_evicted(self, event: ModelEvicted) -> None:
        """Called after an idle model was evicted."""

    def on_model_unloaded(self, event: ModelUnloaded) -> None:
        """Called after a model was unloaded other than by eviction."""

    def on_model_retired(self, event: ModelRetired) -> None:
        """Called when a reload dropped a model still in use."""

    def on_model_still_referenced(self, event: ModelStillReferenced) -> None:
        """Called when an unloaded model is still referenced elsewhere."""

    def on_watchdog_started(self, event: WatchdogStarted) -> None:
        """Called when the watchdog thread starts."""

    def on_watchdog_short(self, event: WatchdogShort) -> None:
        """Called after a watchdog check found memory short."""

    def on_watchdog_recovered(self, event: WatchdogRecovered) -> None:
        """Called when memory is fine again after a stuck shortage."""

    def on_chunk_finished(self, event: ChunkFinished) -> None:
        """Called after a chunk task ended (any outcome)."""

    def on_texts_encoded(self, event: TextsEncoded) -> None:
        """Called in a chunk's thread after the runtime encoded texts for it."""

    def on_message_refused(self, event: MessageRefused) -> None:
        """Called when a queue message was refused without running."""


class Events:
    """The hook: delivers each emitted event to every subscriber, in order."""

    def __init__(self, subscribers: Iterable[Subscriber] = ()) -> None:
        self._subscribers: tuple[Subscriber, ...] = tuple(subscribers)
        self._lock = threading.Lock()  # guards changes; emit reads a snapshot tuple

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return self._subscribers

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add ``subscriber`` (once)."""
        with self._lock:
            if subscriber not in self._subscribers:
                self._subscribers = (*self._subscribers, subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

    def emit(self, event: Event) -> None:
        """Call ``on_<event.name>(event)`` on every subscriber; a failing one is logged."""
        hook = f"on_{event.name}"
        for subscriber in self._subscribers:
            try:
                getattr(subscriber, hook)(event)
            except Exception:  # an observer must never break what it observes
                log.exception(
                    "event=subscriber_failed subscriber=%s hook=%s",
                    type(subscriber).__name__,
                    hook,
                )
