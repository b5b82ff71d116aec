"""``sagemaker``: a SageMaker real-time endpoint, called with boto3 ``sagemaker-runtime``.

``model_path`` is the endpoint name; ``region`` (else boto3's chain) picks the region.
Each request is ``Content-Type: application/json`` with the body
``{"inputs": ["text", ...]}``. Accepted responses (JSON):

- ``{"embeddings": [[float, ...], ...]}`` or a plain list ``[[float, ...], ...]``: one
  vector per input;
- token vectors per input, ``[[[float, ...], ...], ...]`` (as the Hugging Face
  ``feature-extraction`` containers return), pooled here with ``pooling`` (default
  ``mean``).

``normalize`` scales the vectors to unit length. A chunk is split into requests of at
most ``batch_size`` texts and at most :data:`MAX_PAYLOAD_BYTES` of body (the real-time
endpoint limit is 6 MB). Throttling, 5xx and connection errors are retried by botocore's
``adaptive`` retry mode (exponential backoff with jitter, and a client-side rate limit
that slows down while the endpoint throttles); when they persist the chunk is retried
later by Celery (``EndpointBusyError``). Any other refusal fails the chunk with the endpoint name, the
HTTP status, the error code and the message (``EndpointError``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.contract.logs import event_logger
from workers.errors import EndpointBusyError, EndpointError, ModelLoadError
from workers.models.base import BaseEmbeddingModel
from workers.models.pooling import get_pooling, normalize_rows

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

log = event_logger(__name__)

#: Largest request body sent to the endpoint (SageMaker real-time limit: 6 MB).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
#: Error codes that mean "try again later", whatever the HTTP status.
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalDependencyException",
        "ModelNotReadyException",
    }
)
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 530})
#: Tries per request before giving up (the first one included), botocore's count.
MAX_ATTEMPTS = 4


class SageMakerEmbeddingWrapper(BaseEmbeddingModel):
    """Embeddings computed by a remote SageMaker endpoint (``model_path`` = its name)."""

    #: No local weights: loading makes no endpoint call, and there is no RAM to measure.
    remote = True
    imports = ("boto3",)
    #: Body size limit per request (bytes).
    max_payload_bytes = MAX_PAYLOAD_BYTES

    def __init__(self, name: str, spec: ModelSpec) -> None:
        super().__init__(name, spec)
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        self.endpoint = spec.model_path
        self.pooling = get_pooling(spec.pooling or "mean")
        try:
            self.client = boto3.session.Session().client(  # own session: thread-safe to build
                "sagemaker-runtime",
                region_name=spec.region,
                config=Config(
                    retries={"mode": "adaptive", "total_max_attempts": MAX_ATTEMPTS},
                    read_timeout=120,
                ),
            )
        except BotoCoreError as exc:
            raise ModelLoadError(f"model {name!r}: sagemaker-runtime client: {exc}") from exc
        # one log line per retry botocore makes (it logs them at DEBUG only)
        self.client.meta.events.register(
            "request-created.sagemaker-runtime.InvokeEndpoint", self._log_retry
        )
        log.info(
            "event=wrapper_ready model=%s endpoint=%s region=%s",
            name,
            self.endpoint,
            self.client.meta.region_name,
        )

    def encode(self, sentences: list[str]) -> np.ndarray:
        rows: list[np.ndarray] = []
        for batch in split_batches(sentences, self.spec.batch_size, self.max_payload_bytes):
            rows.append(self._invoke(batch))
        if not rows:
            return np.zeros((0, self.spec.dimension or 0), dtype=np.float32)
        vectors = np.concatenate(rows)
        return normalize_rows(vectors) if self.spec.normalize else vectors

    def _invoke(self, texts: list[str]) -> np.ndarray:
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint,
                Body=request_body(texts),
                ContentType="application/json",
                Accept="application/json",
            )
            payload = response["Body"].read()
        except Exception as exc:
            retryable, reason = self._classify(exc)
            if not retryable:
                raise EndpointError(reason) from exc
            # botocore already retried it: what is left is for Celery to retry later
            raise EndpointBusyError(f"{reason} (after {_attempts(exc)} attempts)") from exc
        return parse_embeddings(payload, len(texts), self.pooling, self.endpoint)

    def _log_retry(self, request: Any, **_: Any) -> None:
        attempt = request.context.get("retries", {}).get("attempt", 1)
        if attempt > 1:
            log.warning(
                "event=endpoint_retry model=%s endpoint=%s attempt=%d",
                self.name,
                self.endpoint,
                attempt,
            )

    def _classify(self, exc: Exception) -> tuple[bool, str]:
        """(retryable, message naming the endpoint, status, code and message)."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        where = f"sagemaker endpoint {self.endpoint!r}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = error.get("Code", "")
            message = error.get("Message", "") or str(exc)
            original = exc.response.get("OriginalMessage")
            if original:
                message += f" (model said: {original})"
            retryable = status in RETRYABLE_STATUS or code in RETRYABLE_CODES
            return retryable, f"{where}: HTTP {status} {code}: {message}"
        if isinstance(
            exc,
            EndpointConnectionError
            | ConnectionClosedError
            | ConnectTimeoutError
            | ReadTimeoutError,
        ):
            return True, f"{where}: {type(exc).__name__}: {exc}"
        return False, f"{where}: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.client.close()


def _attempts(exc: Exception) -> int | str:
    """Tries botocore made before ``exc`` (its ``RetryAttempts`` + 1), when it says."""
    retries = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("RetryAttempts")
    return retries + 1 if isinstance(retries, int) else MAX_ATTEMPTS


def request_body(texts: list[str]) -> bytes:
    """The JSON body of one request."""
    return json.dumps({"inputs": texts}, ensure_ascii=False).encode("utf-8")


def split_batches(texts: list[str], max_texts: int, max_bytes: int) -> list[list[str]]:
    """Consecutive groups of at most ``max_texts`` texts whose body fits ``max_bytes``."""
    overhead = len(request_body([]))
    batches: list[list[str]] = []
    current: list[str] = []
    size = overhead
    for index, text in enumerate(texts):
        cost = len(json.dumps(text, ensure_ascii=False).encode("utf-8")) + 2  # ", "
        if overhead + cost > max_bytes:
            raise EndpointError(
                f"text {index} is {cost} bytes as JSON, over the endpoint payload limit of "
                f"{max_bytes} bytes"
            )
        if current and (len(current) >= max_texts or size + cost > max_bytes):
            batches.append(current)
            current, size = [], overhead
        current.append(text)
        size += cost
    if current:
        batches.append(current)
    return batches


def parse_embeddings(payload: bytes, expected: int, pooling: Any, endpoint: str) -> np.ndarray:
    """(expected, dim) float32 vectors from a response body (formats: module docstring)."""
    where = f"sagemaker endpoint {endpoint!r}"
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise EndpointError(f"{where}: the response is not JSON: {payload[:200]!r}") from exc
    if isinstance(data, dict):
        if "embeddings" not in data:
            raise EndpointError(f"{where}: the response has no 'embeddings' (keys: {sorted(data)})")
        data = data["embeddings"]
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise EndpointError(f"{where}: expected {expected} vectors, got {got}")
    try:
        if data and data[0] and isinstance(data[0][0], list):  # token vectors per text
            rows = [pooling(np.asarray([t], np.float32), np.ones((1, len(t)))) for t in data]
            return np.concatenate(rows)
        vectors = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError, IndexError) as exc:
        raise EndpointError(f"{where}: the vectors are not a numeric matrix: {exc}") from exc
    if vectors.ndim != 2:
        raise EndpointError(f"{where}: expected a matrix of vectors, got shape {vectors.shape}")
    return vectors
