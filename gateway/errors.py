"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The status codes are those the OpenAI SDK maps to its exception classes: 400
``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``, 413 (an
``APIStatusError``), 429 ``RateLimitError``, 500 and 503 ``InternalServerError``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tasks.contract.logs import event_logger

log = event_logger(__name__)

#: OpenAI's error ``type`` for each status this gateway answers with.
TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_error",
}


class BodyTooLarge(Exception):
    """Raised while a chunked request body is read, once it passes its route's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")


class BodyTooSlow(Exception):
    """Raised while a request body is read, when the client sends nothing for a while."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive: nothing for {seconds:g} s")


class APIError(Exception):
    """Raised by a route to answer with an OpenAI-shaped error."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    return {
        "error": {
            "message": message,
            "type": TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def response(status: int, message: str, code: str | None = None, param: str | None = None):
    return JSONResponse(body(status, message, code, param), status_code=status)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return response(exc.status, exc.message, exc.code, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return response(exc.status_code, str(exc.detail), code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return response(400, f"{where}: {first.get('msg', 'invalid request')}", None, where)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):
            return response(413, str(exc), "request_too_large")
        if isinstance(exc, BodyTooSlow):
            return response(408, str(exc), "request_timeout")
        log.exception("event=gateway_error error=%r", exc)
        return response(500, f"internal error: {type(exc).__name__}", "internal_error")
