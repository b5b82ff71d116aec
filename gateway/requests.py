"""Reading and checking an embeddings request body: every refusal is a 400 naming the
field, before anything reaches Redis or a worker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import APIError
from gateway.limits import MAX_INPUTS
from tasks.routing import MODEL_NAME_RE

ENCODINGS = ("float", "base64")


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    encoding_format: str
    dimensions: int | None


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying why not."""
    if not raw.strip():
        raise APIError(400, "the request body is empty: send a JSON object")
    try:
        payload = json.loads(raw)
    except UnicodeDecodeError:
        raise APIError(400, "the request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(payload, dict):
        raise APIError(400, f"the request body must be a JSON object, not {_kind(payload)}")
    return payload


def model_of(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required: a model name", param="model")
    if not MODEL_NAME_RE.match(model):
        raise APIError(404, f"the model {model[:80]!r} does not exist", "model_not_found", "model")
    return model


def embedding_request(payload: dict[str, Any]) -> EmbeddingRequest:
    """Check an embeddings body (OpenAI's fields; ``user`` is accepted and ignored)."""
    model = model_of(payload)
    if "input" not in payload:
        raise APIError(400, "'input' is required: a string or a list of strings", param="input")
    texts = _texts(payload["input"])
    encoding = payload.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise APIError(
            400,
            f"encoding_format must be 'float' or 'base64', got {str(encoding)[:40]!r}",
            param="encoding_format",
        )
    dimensions = payload.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise APIError(
            400,
            f"dimensions must be a positive integer, got {dimensions!r:.40}",
            param="dimensions",
        )
    return EmbeddingRequest(model, texts, str(encoding), dimensions)


def _texts(given: Any) -> list[str]:
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list):
        raise APIError(
            400, f"input must be a string or a list of strings, not {_kind(given)}", param="input"
        )
    if not texts:
        raise APIError(400, "input is empty: nothing to embed", param="input")
    if len(texts) > MAX_INPUTS:
        raise APIError(
            400,
            f"input holds {len(texts)} items; at most {MAX_INPUTS} per request",
            param="input",
        )
    for i, text in enumerate(texts):
        if isinstance(text, int | list):
            raise APIError(
                400,
                "input holds token ids: this gateway embeds text only, send strings "
                "(the fleet's models tokenize themselves)",
                param="input",
            )
        if not isinstance(text, str):
            raise APIError(400, f"input[{i}] is {_kind(text)}, not a string", param="input")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise APIError(
                400, f"input[{i}] holds a lone surrogate (not valid Unicode)", param="input"
            ) from None
    return texts


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(
        type(value), type(value).__name__
    )
