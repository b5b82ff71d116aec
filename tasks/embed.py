"""The chunk task: validate, lease the model, encode, return float32 bytes.

Thin on purpose: model logic lives in ``workers`` (imported lazily, so producers that
import this module never load torch).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task

from tasks import jobstore
from tasks.app import app
from tasks.errors import JobCancelled, PermanentError, TransientError
from tasks.routing import EMBED_TASK
from tasks.wire import pack_embeddings, validate_request

log = logging.getLogger(__name__)


class ChunkTask(Task):  # type: ignore[misc]
    """Records chunk progress on the job once the result is stored.

    Celery stores the result before ``on_success``/``on_failure`` run, so a producer
    that sees a chunk marked done can always fetch its result.
    """

    #: Results are kilobytes of float32 bytes: keep their repr in logs and events short.
    resultrepr_maxsize = 160

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: dict[str, Any]) -> None:
        job_id, index = kwargs.get("job_id"), kwargs.get("index")
        if isinstance(job_id, str) and isinstance(index, int):
            jobstore.mark_done(self.app.backend.client, job_id, index)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: dict[str, Any], einfo: Any
    ) -> None:
        job_id, index = kwargs.get("job_id"), kwargs.get("index")
        if isinstance(job_id, str) and isinstance(index, int) and index >= 0:
            message = f"{type(exc).__name__}: {exc}"
            jobstore.mark_failed(self.app.backend.client, job_id, index, message)


@app.task(
    name=EMBED_TASK,
    base=ChunkTask,
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=20,
)
def embed_chunk(
    self: Task,
    job_id: Any = None,
    index: Any = None,
    model: Any = None,
    texts: Any = None,
    options: Any = None,
) -> dict[str, Any]:
    """Embed one chunk of a job; the result is ``tasks.wire`` framing of float32 bytes."""
    job_id, index, model, texts, options = validate_request(job_id, index, model, texts, options)
    client = self.app.backend.client
    if jobstore.is_cancelled(client, job_id):
        raise JobCancelled(f"job {job_id} was cancelled")
    jobstore.mark_started(client, job_id)
    from workers.runtime import embed_texts

    started = time.perf_counter()
    try:
        vectors, version = embed_texts(model, texts)
    except (PermanentError, TransientError):
        raise
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
    return pack_embeddings(vectors, model=model, version=version)
