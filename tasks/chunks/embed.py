"""The chunk task: validate, lease the model, encode, return float32 bytes.

Thin on purpose: model logic lives in ``workers``, whose boot hands the app its encoder
(``tasks.app.FleetApp.encoder``); this module imports no worker code, so producers never
load torch.

Every delivery of a chunk is counted in Redis before the model runs, and blamed on the
chunk only for the worker deaths that caught it running (``tasks.jobs.deliveries``). A chunk
whose blame reaches ``EMBEDFLEET_MAX_DELIVERIES`` is failed with
:class:`TooManyDeliveries` instead of killing the next worker. A chunk already done (a
late redelivery) is neither counted nor run: its stored result is returned again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import Celery, Task
from celery.signals import task_internal_error, worker_init

import celeryconfig
from tasks.app import Encoder, app
from tasks.contract.errors import (
    JobCancelled,
    PermanentError,
    RedisMemoryFull,
    TooManyDeliveries,
    TransientError,
)
from tasks.contract.logs import event_logger
from tasks.contract.wire import pack_embeddings, validate_request
from tasks.jobs import deliveries, jobstore, redis_full, usage
from tasks.jobs.deliveries import Delivery
from tasks.jobs.redis_retry import REDIS_RETRY_S, retry_while_unreachable
from tasks.routing import DATASET_TASK, EMBED_TASK

log = event_logger(__name__)

T = TypeVar("T")


def encoder_of(celery_app: Celery) -> Encoder:
    """The encoder the worker's boot handed ``celery_app``; a process without one (not a
    worker) fails the chunk with a clear :class:`PermanentError`."""
    encoder = getattr(celery_app, "encoder", None)
    if encoder is None:
        raise PermanentError(
            "this process has no encoder: chunks run in workers started with "
            "`embedfleet worker` or `celery -A tasks worker` (whose boot hands the app one)"
        )
    return encoder  # type: ignore[no-any-return]


def with_redis_retry(call: Callable[[], T], what: str, deadline_s: float = REDIS_RETRY_S) -> T:
    """Run ``call``, retrying while Redis is unreachable; then raise :class:`TransientError`.
    A write Redis refuses for memory raises :class:`RedisMemoryFull` at once."""
    try:
        return retry_while_unreachable(
            call, deadline_s, what, (redis.ConnectionError, redis.TimeoutError)
        )
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise TransientError(f"Redis unreachable while {what}: {exc}") from exc
    except redis.ResponseError as exc:
        if redis_full.is_redis_full(exc):
            raise RedisMemoryFull(redis_full.reason(what)) from exc
        raise


def failure_message(exc: BaseException, job_id: str) -> str:
    """What a chunk's failure records: the error, naming Redis memory when it was that."""
    if redis_full.is_redis_full(exc) and not isinstance(exc, RedisMemoryFull):
        return redis_full.reason("running the chunk", job_id)
    return f"{type(exc).__name__}: {exc}".replace(redis_full.THE_JOB, job_id)


def record_redis_full(
    client: redis.Redis, job_id: str, index: int, exc: BaseException, *, ttl_s: int
) -> None:
    """Record a chunk that Redis refused for memory as failed, before Celery tries to
    store anything (which a full Redis refuses too, skipping ``on_failure``)."""
    try:
        jobstore.mark_failed(client, job_id, index, failure_message(exc, job_id), ttl_s=ttl_s)
    except redis.RedisError as error:  # logged: the message is acknowledged regardless
        log.error(
            "event=chunk_failure_not_recorded job=%s chunk=%d error=%r", job_id, index, str(error)
        )


@task_internal_error.connect
def _on_internal_error(
    sender: Any = None, kwargs: Any = None, exception: Any = None, **_: Any
) -> None:
    """Celery itself could not store a chunk's state (Redis full, before or after the
    task ran): record the chunk failed, naming Redis memory, so it is never lost."""
    chunk = chunk_of(kwargs) if isinstance(kwargs, dict) else None
    if chunk is None or not redis_full.is_redis_full(exception):
        return
    job_id, index = chunk
    owner = getattr(sender, "app", None) or app
    client = owner.backend.client
    log.error("event=redis_full job=%s chunk=%d step=%r", job_id, index, "storing the chunk state")
    try:
        reason = redis_full.reason("storing the chunk's state", job_id)
        jobstore.mark_failed(client, job_id, index, reason, True, ttl_s=ttl_of(owner, job_id))
    except redis.RedisError as error:
        log.error(
            "event=chunk_failure_not_recorded job=%s chunk=%d error=%r", job_id, index, str(error)
        )


def ttl_of(celery_app: Celery, job_id: str) -> int:
    """Seconds the records a chunk of job ``job_id`` writes last: the TTL the job's
    record keeps (its producer's ``EMBEDFLEET_RESULT_TTL_S``), so every key of the job
    expires with it; for a record without one, this worker's own setting."""
    own, client = int(celery_app.settings.result_ttl_s), celery_app.backend.client
    # a read like the writes it serves: retried while Redis is away (a restart mid-chunk)
    return with_redis_retry(lambda: jobstore.ttl_of(client, job_id, own), "reading the job's TTL")


def job_of(task_id: str) -> str:
    """The job id of a chunk's task id (``<job id>.<chunk index>``)."""
    return task_id.rpartition(".")[0]


def expire_result(celery_app: Celery, task_id: str, ttl_s: int) -> None:
    """Give the chunk result Celery stored for ``task_id`` (with this worker's
    ``result_expires``) the job's TTL, when that differs."""
    if ttl_s != int(celery_app.settings.result_ttl_s):
        backend = celery_app.backend
        backend.client.expire(backend.get_key_for_task(task_id), ttl_s)


def begin_delivery(celery_app: Celery, task_id: str, attempt: object) -> Delivery:
    """``deliveries.begin`` with the lapse and TTL of ``celery_app``'s settings."""
    client, settings = celery_app.backend.client, celery_app.settings
    lapse_s = celeryconfig.worker_lapse_s(settings)
    return with_redis_retry(
        lambda: deliveries.begin(
            client, task_id, attempt, lapse_s=lapse_s, ttl_s=ttl_of(celery_app, job_of(task_id))
        ),
        "counting a delivery",
    )


def end_delivery(celery_app: Celery, task_id: str, attempt: object) -> None:
    """``deliveries.end`` with the TTL of ``celery_app``'s settings."""
    client, ttl_s = celery_app.backend.client, ttl_of(celery_app, job_of(task_id))
    with_redis_retry(
        lambda: deliveries.end(client, task_id, attempt, ttl_s=ttl_s), "ending a delivery"
    )


def check_deliveries(delivery: Delivery, job_id: str, index: int, limit: int) -> None:
    """Raise :class:`TooManyDeliveries` once a chunk's blame reaches ``limit`` deaths."""
    if delivery.blame >= limit - 1e-9:
        raise TooManyDeliveries(
            f"chunk {index} of job {job_id} was delivered {delivery.number} times and no "
            f"worker finished it: its workers died while running it (killed, out of memory "
            f"or crashed; blame {delivery.blame:.2f}, a death shared by the chunks the "
            f"worker held); given up after EMBEDFLEET_MAX_DELIVERIES={limit}"
        )


def cancelled_else_started(client: redis.Redis, job_id: str) -> bool:
    """True when the job was cancelled; else note that it started (once per job).

    One ``HMGET`` per chunk once the job is marked started, instead of a round trip to
    check the cancel flag and two to mark the start (``jobstore.is_cancelled`` and
    ``jobstore.mark_started`` did that for every chunk).
    """
    cancelled, started, model = client.hmget(
        jobstore.PREFIX + job_id, "cancelled", "started", "model"
    )
    if cancelled == b"1":
        return True
    if model is not None and started is None:  # only jobs that exist get the mark
        jobstore.mark_started(client, job_id)
    return False


def stored_result(celery_app: Celery, task_id: str) -> Any:
    """The result a finished chunk stored, or None when there is none."""
    meta = celery_app.backend.get_task_meta(task_id)
    return meta.get("result") if meta.get("status") == "SUCCESS" else None


def keep_only_chunk_tasks(celery_app: Celery) -> list[str]:
    """Unregister every task but the chunk task; return the names removed.

    Celery registers built-in tasks (``celery.map``, ``celery.chord_unlock``, ...) in
    every app. A worker runs chunks only, so a message naming any other task is refused
    as unregistered ("Received unregistered task") instead of being run.
    """
    removed = [name for name in list(celery_app.tasks) if name not in (EMBED_TASK, DATASET_TASK)]
    for name in removed:
        celery_app.tasks.pop(name, None)
    return removed


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    removed = keep_only_chunk_tasks(getattr(sender, "app", None) or app)
    log.info("event=builtin_tasks_unregistered tasks=%s", ",".join(sorted(removed)) or "-")


def naming_model(exc: Exception, model: str) -> Exception:
    """``exc``, its message prefixed with the model when it does not name it already
    (a chunk's error must say which config entry failed)."""
    if repr(model) in str(exc):
        return exc
    try:
        return type(exc)(f"model {model!r}: {exc}")
    except TypeError:  # an error class with another signature: keep it as it is
        return exc


def chunk_of(kwargs: dict[str, Any]) -> tuple[str, int] | None:
    """(job id, chunk index) a chunk task's kwargs name; None for a malformed message,
    whose failure must not touch any job's keys."""
    job_id, index = kwargs.get("job_id"), kwargs.get("index")
    if isinstance(job_id, str) and isinstance(index, int) and not isinstance(index, bool):
        return (job_id, index) if index >= 0 else None
    return None


class ChunkTask(Task):  # type: ignore[misc]
    """Records chunk progress on the job once the result is stored.

    Celery stores the result before ``on_success``/``on_failure`` run, so a producer
    that sees a chunk marked done can always fetch its result. Both retry while Redis
    restarts: a stored result that is never marked done would stall its job.
    """

    #: Results are kilobytes of float32 bytes: keep their repr in logs and events short.
    resultrepr_maxsize = 160
    #: Checks body and headers before Celery's trace setup can raise on them.
    Request = "tasks.guards.request:ChunkRequest"

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: dict[str, Any]) -> None:
        job_id, index = kwargs.get("job_id"), kwargs.get("index")
        if isinstance(job_id, str) and isinstance(index, int):
            client, ttl_s = self.app.backend.client, ttl_of(self.app, job_id)
            with_redis_retry(
                lambda: jobstore.mark_done(client, job_id, index, ttl_s=ttl_s),
                "marking a chunk done",
            )
            with_redis_retry(
                lambda: expire_result(self.app, task_id, ttl_s), "expiring a chunk result"
            )

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: dict[str, Any], einfo: Any
    ) -> None:
        chunk = chunk_of(kwargs)
        if chunk is None:
            return
        job_id, index = chunk
        client, ttl_s = self.app.backend.client, ttl_of(self.app, job_id)
        message = failure_message(exc, job_id)

        def record() -> None:
            # Only jobs that exist: a malformed message must not create job keys.
            if client.exists(jobstore.PREFIX + job_id):
                jobstore.mark_failed(client, job_id, index, message, ttl_s=ttl_s)

        with_redis_retry(record, "recording a chunk failure")
        with_redis_retry(lambda: expire_result(self.app, task_id, ttl_s), "expiring a result")


#: How every chunk task (list and dataset) retries a :class:`TransientError`: backoff
#: from 2 s doubling to 60 s, with jitter, 20 times at most.
CHUNK_RETRY: dict[str, Any] = {
    "autoretry_for": (TransientError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
    # A cancelled job's chunk is refused as planned, not a fault: Celery logs it on one
    # INFO line instead of an ERROR with a traceback (a worker started after the cancel
    # learns of it here, from the job record: workers start without mingle).
    "throws": (JobCancelled,),
}


@app.task(name=EMBED_TASK, base=ChunkTask, bind=True, **CHUNK_RETRY)
def embed_chunk(
    self: Task,
    job_id: Any = None,
    index: Any = None,
    model: Any = None,
    texts: Any = None,
    options: Any = None,
) -> dict[str, Any]:
    """Embed one chunk of a job; the result is ``tasks.contract.wire`` framing of float32
    bytes (``long_text=windows``: a row per window, with ``source_row`` naming its text)."""
    job_id, index, model, texts, options = validate_request(
        job_id, index, model, texts, options, self.app.settings.max_chunk_bytes
    )
    client = self.app.backend.client
    task_id, attempt = str(self.request.id), self.request.retries
    if with_redis_retry(lambda: jobstore.is_done(client, job_id, index), "checking done"):
        previous = with_redis_retry(lambda: stored_result(self.app, task_id), "reading a result")
        if previous is not None:  # a late redelivery of a finished chunk: nothing to do
            log.info("event=chunk_already_done job=%s chunk=%d", job_id, index)
            return previous  # type: ignore[no-any-return]
    try:
        delivery = begin_delivery(self.app, task_id, attempt)
        try:
            return _run_chunk(self, delivery, job_id, index, model, texts, options)
        finally:
            end_delivery(self.app, task_id, attempt)
    except RedisMemoryFull as exc:
        record_redis_full(client, job_id, index, exc, ttl_s=ttl_of(self.app, job_id))
        raise


def _run_chunk(
    self: Task,
    delivery: Delivery,
    job_id: str,
    index: int,
    model: str,
    texts: list[str],
    options: dict[str, Any],
) -> dict[str, Any]:
    client = self.app.backend.client
    if delivery.number > 1:
        log.warning(
            "event=chunk_redelivered job=%s chunk=%d delivery=%d blame=%.2f share=%.2f max=%d",
            job_id,
            index,
            delivery.number,
            delivery.blame,
            delivery.share,
            self.app.settings.max_deliveries,
        )
    check_deliveries(delivery, job_id, index, self.app.settings.max_deliveries)
    if with_redis_retry(lambda: cancelled_else_started(client, job_id), "checking cancel"):
        raise JobCancelled(f"job {job_id} was cancelled")
    encode = encoder_of(self.app)
    started = time.perf_counter()
    try:
        # The embedding reuse store, the runtime's only Redis use, computes instead when
        # Redis is unreachable (workers.reuse.store.embed_with_cache).
        vectors, version, *more = encode(model, texts, options)
    except (PermanentError, TransientError) as exc:
        raise naming_model(exc, model) from exc.__cause__
    except Exception as exc:  # an unexpected bug in a wrapper: fail the chunk, keep serving
        log.exception("event=chunk_error job=%s chunk=%s model=%s", job_id, index, model)
        raise PermanentError(f"model {model!r} failed to encode: {exc}") from exc
    log.info(
        "event=chunk_done job=%s chunk=%d model=%s texts=%d seconds=%.3f",
        job_id,
        index,
        model,
        len(texts),
        time.perf_counter() - started,
    )
    columns = more[0] if more else {}
    ttl_s = ttl_of(self.app, job_id)
    with_redis_retry(
        lambda: usage.record(client, job_id, index, columns, ttl_s=ttl_s), "recording usage"
    )
    return pack_embeddings(vectors, model=model, version=version, columns=columns)
