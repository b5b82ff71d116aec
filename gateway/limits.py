"""Bounds on what one HTTP request may hold, checked before a route reads it.

A body larger than the limit of its route is answered 413 as soon as its
``Content-Length`` says so, or, for a chunked body, as soon as the bytes read pass the
limit: the gateway never holds more than the limit of one request in memory. A body
declared too large is read and dropped (up to :data:`MAX_DRAIN_BYTES`) before the 413,
so the client, still sending, reads the answer instead of a connection reset. A client
that sends nothing for :data:`READ_TIMEOUT_S` gets 408.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.errors import BodyTooLarge, BodyTooSlow, body

#: Bytes of a JSON request body (OpenAI: 2,048 inputs of up to 8,192 tokens each).
MAX_JSON_BYTES = 16 * 1024 * 1024
#: Bytes of an uploaded file (OpenAI's limit for a batch input file is 200 MB).
MAX_FILE_BYTES = 200 * 1024 * 1024
#: Inputs in one embeddings request (OpenAI's limit).
MAX_INPUTS = 2048
#: Bytes of a too-large body read and dropped before the 413; past it, the connection
#: is closed under the client.
MAX_DRAIN_BYTES = 256 * 1024 * 1024
#: Seconds a client may go without sending a byte of its body.
READ_TIMEOUT_S = 30.0


def limit_for(path: str) -> int:
    return MAX_FILE_BYTES if path.rstrip("/") == "/v1/files" else MAX_JSON_BYTES


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if too_big:
                if int(declared) <= MAX_DRAIN_BYTES:
                    await _drain(receive)
                await _answer(send, 413, _too_large(limit))
                return
        seen = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), READ_TIMEOUT_S)
            except TimeoutError:
                raise BodyTooSlow(READ_TIMEOUT_S) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, 413, _too_large(limit))
        except BodyTooSlow as exc:
            if not started:
                await _answer(send, 408, str(exc))


async def _drain(receive: Any) -> None:
    """Read and drop the rest of a body (a client that stalls is left behind)."""
    while True:
        try:
            message = await asyncio.wait_for(receive(), READ_TIMEOUT_S)
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


async def _answer(send: Any, status: int, message: str) -> None:
    code = {413: "request_too_large", 408: "request_timeout"}.get(status)
    payload = json.dumps(body(status, message, code))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload.encode()})
