"""The threads pool, with a net under Celery's trace setup.

``tasks.guards.request.ChunkRequest`` refuses every body and header shape known to make
Celery's trace setup raise (``trace_task_ret`` / ``fast_trace_task``: decoding the body,
``request.update(**embed)``), before a thread runs it. Should another shape get through,
the exception would end in the thread's future, unseen: the request would never be
acknowledged and its prefetch slot would stay taken for good (a worker of concurrency 1
stops). This pool catches it there: the message is rejected without requeue (it leaves
the unacked index), the request is marked done, the refusal is logged once and counted
(``task_rejected``), and the thread serves the next message.

``celeryconfig.worker_pool`` names this class, so ``embedfleet worker`` and a plain
``celery -A tasks worker`` both run it; ``--pool threads`` would choose Celery's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.concurrency.thread import TaskPool
from celery.signals import task_rejected
from celery.worker.state import task_ready

from tasks.contract.logs import event_logger
from tasks.jobs import jobstore, redis_full

log = event_logger(__name__)

#: What a guarded target returns for a refused message (its callback is then skipped).
REFUSED = object()


def guard(target: Callable[..., Any], callback: Any) -> Callable[..., Any]:
    """``target`` (Celery's trace entry point), refusing its message if it raises."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return target(*args, **kwargs)
        except Exception as exc:
            request = getattr(callback, "__self__", None)
            if redis_full.is_redis_full(exc) and _record_redis_full(request):
                # A full Redis refused Celery's own writes: the chunk is recorded failed
                # naming Redis memory (`retry` sends it again), not refused as malformed.
                if request is not None:
                    try:
                        request.reject(requeue=False)
                    finally:
                        task_ready(request)
                return REFUSED
            log.error(
                "event=message_refused reason=%r task_id=%s error=%r",
                "Celery's trace setup raised before the task ran",
                getattr(request, "id", "?"),
                f"{type(exc).__name__}: {exc}",
            )
            if request is not None:
                try:
                    request.reject(requeue=False)
                finally:
                    task_ready(request)
            task_rejected.send(sender=None, message=getattr(request, "message", None), exc=exc)
            return REFUSED

    return run


def _record_redis_full(request: Any) -> bool:
    """Record the chunk of ``request`` failed for Redis memory (unless a reason is
    recorded already); False when it is not a chunk or the record failed too."""
    kwargs = getattr(request, "kwargs", None)
    job_id = kwargs.get("job_id") if isinstance(kwargs, dict) else None
    index = kwargs.get("index") if isinstance(kwargs, dict) else None
    if not isinstance(job_id, str) or not isinstance(index, int) or isinstance(index, bool):
        return False
    try:
        owner = request.task.app  # this worker's app, built from its settings
        client = owner.backend.client  # the job's TTL, from its record
        ttl_s = jobstore.ttl_of(client, job_id, owner.settings.result_ttl_s)
        reason = redis_full.reason("storing the chunk's state", job_id)
        jobstore.mark_failed(client, job_id, index, reason, keep_existing=True, ttl_s=ttl_s)
    except Exception as error:
        log.error(
            "event=chunk_failure_not_recorded job=%s chunk=%s error=%r", job_id, index, str(error)
        )
        return False
    log.error("event=redis_full job=%s chunk=%d step=%r", job_id, index, "storing the chunk state")
    return True


def skip_refused(callback: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """``callback``, not called for a refused message (there is no result to report)."""
    if callback is None:
        return None

    def call(result: Any) -> Any:
        return None if result is REFUSED else callback(result)

    return call


class ThreadPool(TaskPool):  # type: ignore[misc]
    """Celery's threads pool whose targets never leave a message unacknowledged."""

    def on_apply(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **options: Any,
    ) -> Any:
        return super().on_apply(
            guard(target, callback),
            args,
            kwargs,
            skip_refused(callback),
            accept_callback,
            **options,
        )
