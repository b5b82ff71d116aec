"""``POST /v1/embeddings``: one request is one list job of the fleet.

The job runs at the list jobs' priority (kombu step 0, ahead of dataset chunks at
``EMBEDFLEET_DATASET_PRIORITY``) and through the embedding cache. A model that no live
worker serves is answered 503 at once; a worker that goes away while the request waits
is noticed within :data:`LIVENESS_CHECK_S`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from gateway.errors import APIError
from gateway.requests import EmbeddingRequest, embedding_request, parse_json
from gateway.usage import TokenCounter
from producers.errors import InputError, JobFailedError, UnknownModelError, UsageError
from tasks.contract import catalog
from tasks.contract.vectors import FLOAT_DTYPE, to_base64

#: Seconds between two checks that a live worker still serves the model while a
#: request waits for its job.
LIVENESS_CHECK_S = 2.0
#: Seconds a request waits for its job before it is answered 503 (the OpenAI SDK's own
#: timeout is 600 s).
REQUEST_TIMEOUT_S = 300.0

router = APIRouter()


@router.post("/v1/embeddings")
async def create_embeddings(request: Request) -> dict[str, Any]:
    payload = parse_json(await request.body())
    asked = embedding_request(payload)
    state = request.app.state
    vectors, tokens = await run_in_threadpool(embed, state.client, state.tokens, asked)
    return response_body(asked, vectors, tokens)


def embed(client: Any, tokens: TokenCounter, asked: EmbeddingRequest) -> tuple[np.ndarray, int]:
    """Run ``asked`` through the fleet: its (n, dim) vectors (``dimensions`` applied by
    the fleet, after its embedding cache) and the tokens counted."""
    try:
        model, _, _ = client.resolve_model(asked.model, "")
        if not catalog.live_workers(client.redis, model):
            raise APIError(
                503,
                f"no live worker serves the model {model!r} now: start one "
                f"(`embedfleet worker --models {model}`) or retry later",
                "model_unavailable",
            )
        job = client.submit(asked.texts, model=asked.model, dimensions=asked.dimensions)
        vectors = _wait(client, job, model)
    except UnknownModelError as exc:
        raise APIError(404, str(exc), "model_not_found", "model") from None
    except InputError as exc:
        raise APIError(400, str(exc), param="input") from None
    except JobFailedError as exc:
        refused = [r for r in exc.errors.values() if r.startswith("InvalidRequest: ")]
        if refused:  # the worker judged the request itself wrong (e.g. dimensions)
            raise APIError(400, refused[0].removeprefix("InvalidRequest: ")) from None
        raise APIError(500, f"the fleet could not embed the input: {exc}", "job_failed") from None
    except UsageError as exc:  # a bad option, or chunks that Redis would not take
        if isinstance(exc.__cause__, RedisError | OperationalError | ConnectionError):
            raise APIError(503, str(exc), "fleet_unavailable") from None
        raise APIError(400, str(exc)) from None
    except RedisError as exc:
        raise APIError(
            503, f"the fleet's Redis is unreachable: {exc}", "fleet_unavailable"
        ) from None
    return vectors, tokens.count(model, asked.texts)


def _wait(client: Any, job: Any, model: str) -> np.ndarray:
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while True:
        try:
            return job.wait(timeout=LIVENESS_CHECK_S)
        except TimeoutError:
            gone = not catalog.live_workers(client.redis, model)
            if gone or time.monotonic() > deadline:
                job.cancel()
                why = "no live worker serves it any more" if gone else "timed out"
                raise APIError(
                    503, f"the request for model {model!r} {why}; retry later", "model_unavailable"
                ) from None


def response_body(asked: EmbeddingRequest, vectors: np.ndarray, tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings response; base64 is the row's little-endian float32 bytes."""
    rows = np.ascontiguousarray(vectors, dtype=FLOAT_DTYPE)
    data = [to_base64(r) for r in rows] if asked.encoding_format == "base64" else rows.tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
        "model": asked.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
