"""The chunk path's events: Celery's task signals, turned into ``chunk_finished``.

The chunk tasks live in the contract (``tasks.chunks``), which imports no worker code;
the worker's boot installs :class:`ChunkSignals`, which hears ``task_prerun`` /
``task_postrun`` / ``task_revoked`` for both chunk tasks (list and dataset) and emits
one :class:`~workers.observability.events.ChunkFinished` per outcome, with its
``kind``. It also subscribes to ``model_loaded`` and ``texts_encoded``, which the
runtime emits in the thread of the task that caused them: a chunk's encode time
excludes a load it ran, and a dataset chunk, whose message carries no texts, is
counted by the texts its worker read and encoded.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery.signals import task_postrun, task_prerun, task_rejected, task_revoked

from tasks.contract.errors import JobCancelled
from tasks.routing import DATASET_TASK, EMBED_TASK
from workers.observability.events import (
    ChunkFinished,
    Events,
    MessageRefused,
    ModelLoaded,
    Subscriber,
    TextsEncoded,
)

#: Celery task name -> the ``kind`` label of its chunks.
CHUNK_KINDS = {EMBED_TASK: "list", DATASET_TASK: "dataset"}


def _kind(task: Any) -> str | None:
    return CHUNK_KINDS.get(str(getattr(task, "name", None)))


class ChunkSignals(Subscriber):
    """Emits a ``chunk_finished`` event for every chunk task that ends in this process."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self._started: dict[str, float] = {}  # task id -> perf_counter at prerun
        self._local = threading.local()  # load seconds of the running task's thread

    def connect(self) -> None:
        """Hook the Celery signals and hear this process's model loads."""
        task_prerun.connect(self.on_prerun, weak=False)
        task_postrun.connect(self.on_postrun, weak=False)
        task_revoked.connect(self.on_revoked, weak=False)
        # Celery's consumer and tasks.guards.transport send it for a message refused unrun.
        task_rejected.connect(self.on_rejected, weak=False)
        self.events.subscribe(self)

    def disconnect(self) -> None:
        task_prerun.disconnect(self.on_prerun)
        task_postrun.disconnect(self.on_postrun)
        task_revoked.disconnect(self.on_revoked)
        task_rejected.disconnect(self.on_rejected)
        self.events.unsubscribe(self)

    def on_model_loaded(self, event: ModelLoaded) -> None:
        self._local.load_seconds = getattr(self._local, "load_seconds", 0.0) + event.seconds

    def on_texts_encoded(self, event: TextsEncoded) -> None:
        encoded = getattr(self._local, "texts", None)
        if encoded is not None:  # inside a chunk task of this thread
            encoded.extend(event.texts)

    # -- celery signals ------------------------------------------------------------------
    def on_prerun(self, task_id: str = "", task: Any = None, **_: Any) -> None:
        if _kind(task) is None:
            return
        self._started[task_id] = time.perf_counter()
        self._local.load_seconds = 0.0
        self._local.texts = []

    def on_postrun(
        self,
        task_id: str = "",
        task: Any = None,
        kwargs: dict[str, Any] | None = None,
        retval: Any = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        kind = _kind(task)
        if kind is None:
            return
        started = self._started.pop(task_id, None)
        kwargs = kwargs or {}
        model = str(kwargs.get("model") or "unknown")
        encoded, self._local.texts = getattr(self._local, "texts", None), None
        # A list chunk's texts are its kwargs (a chunk served from the reuse store
        # without a model call still counts them); a dataset chunk's are what it encoded.
        texts = kwargs.get("texts") if kind == "list" else encoded
        seconds = None
        if state == "SUCCESS":
            status = "ok"
            if started is not None:
                waited = getattr(self._local, "load_seconds", 0.0)
                seconds = max(0.0, time.perf_counter() - started - waited)
        elif state == "RETRY":
            status = "retry"
        elif isinstance(retval, JobCancelled):
            status = "cancelled"
        else:
            status = "failed"
        kept = tuple(str(t) for t in texts) if isinstance(texts, list) and status == "ok" else ()
        self.events.emit(
            ChunkFinished(model=model, status=status, texts=kept, seconds=seconds, kind=kind)
        )

    def on_revoked(self, request: Any = None, **_: Any) -> None:
        kind = _kind(request)
        if kind is None:
            return
        kwargs = getattr(request, "kwargs", None) or {}
        model = str(kwargs.get("model") or "unknown")
        self.events.emit(ChunkFinished(model=model, status="revoked", texts=(), kind=kind))

    def on_rejected(self, **_: Any) -> None:
        self.events.emit(MessageRefused())


def install_chunk_events(events: Events) -> ChunkSignals:
    """Connect chunk signals emitting to ``events`` (the runtime's); the worker's boot
    calls it once and keeps what it returns (``disconnect`` at shutdown)."""
    signals = ChunkSignals(events)
    signals.connect()
    return signals
