"""The body limits at the ASGI level: declared too large, chunked past the limit, and a
client that stops sending each get their 4xx before any route reads the body."""

from __future__ import annotations

import asyncio
import json

from gateway import limits


async def _reading_app(scope, receive, send) -> None:
    """A route that reads the whole body, then answers 200."""
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _run(messages: list[dict], headers: list[tuple[bytes, bytes]], stall: bool = False):
    sent: list[dict] = []
    queue = list(messages)

    async def receive() -> dict:
        if not queue:
            if stall:
                await asyncio.sleep(3600)
            return {"type": "http.disconnect"}
        return queue.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/embeddings", "headers": headers}
    asyncio.run(limits.BodyLimit(_reading_app)(scope, receive, send))
    status = sent[0]["status"]
    body = json.loads(sent[1]["body"]) if status != 200 else None
    return status, body, queue


def test_a_declared_oversize_is_413_after_the_body_is_dropped():
    size = limits.MAX_JSON_BYTES + 1
    chunks = [{"type": "http.request", "body": b"x" * 1024, "more_body": True}] * 3
    status, body, left = _run(chunks, [(b"content-length", str(size).encode())])
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert left == []  # read and dropped, so the client reads the answer


def test_a_chunked_body_past_the_limit_is_413(monkeypatch):
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 10)
    chunks = [{"type": "http.request", "body": b"x" * 8, "more_body": True}] * 3
    status, body, _ = _run(chunks, [])
    assert status == 413


def test_a_client_that_stops_sending_gets_408(monkeypatch):
    monkeypatch.setattr(limits, "READ_TIMEOUT_S", 0.05)
    chunks = [{"type": "http.request", "body": b"{", "more_body": True}]
    status, body, _ = _run(chunks, [], stall=True)
    assert status == 408 and body["error"]["code"] == "request_timeout"


def test_a_bad_content_length_is_400():
    status, _, _ = _run([], [(b"content-length", b"lots")])
    assert status == 400
