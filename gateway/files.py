"""``/v1/files``: upload (multipart, ``purpose: "batch"``), list, retrieve, content,
delete, in OpenAI's shapes.

A file's record lives in Redis (hash ``embedfleet:file:<id>``, index
``embedfleet:files`` by creation time), its bytes in the :class:`FileStore`. Records
do not expire: a file stays until it is deleted, as OpenAI's do.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from gateway.errors import APIError
from gateway.filestore import FileStore

PREFIX = "embedfleet:file:"
INDEX = "embedfleet:files"
#: Purposes a client may upload (batch output files are written by the gateway).
UPLOAD_PURPOSES = ("batch",)
#: Characters of a filename kept in its record.
MAX_FILENAME = 255
#: Most records one list call returns (OpenAI's limit).
MAX_LIST = 10_000

router = APIRouter()


def content_name(file_id: str) -> str:
    """The store name of a file's bytes."""
    return f"{file_id}.jsonl"


def record(redis: Any, file_id: str) -> dict[str, Any] | None:
    """A file's OpenAI object, or None."""
    raw = redis.hgetall(PREFIX + file_id) if file_id.startswith("file-") else None
    if not raw:
        return None
    got = {k.decode(): v.decode() for k, v in raw.items()}
    return {
        "id": got["id"],
        "object": "file",
        "bytes": int(got["bytes"]),
        "created_at": int(got["created_at"]),
        "filename": got["filename"],
        "purpose": got["purpose"],
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def add(redis: Any, file_id: str, filename: str, purpose: str, size: int) -> dict[str, Any]:
    """Record a file whose bytes are in the store (replacing any record of that id)."""
    now = time.time()
    pipe = redis.pipeline()
    pipe.hset(
        PREFIX + file_id,
        mapping={
            "id": file_id,
            "bytes": size,
            "created_at": int(now),
            "filename": filename[:MAX_FILENAME],
            "purpose": purpose,
        },
    )
    pipe.zadd(INDEX, {file_id: now})  # to the microsecond: the order of uploads
    pipe.execute()
    found = record(redis, file_id)
    assert found is not None
    return found


def require(redis: Any, file_id: str) -> dict[str, Any]:
    found = record(redis, file_id)
    if found is None:
        raise APIError(404, f"no file {file_id[:80]!r}", "file_not_found", "file_id")
    return found


def _store(request: Request) -> FileStore:
    return request.app.state.files


@router.post("/v1/files")
async def upload(request: Request) -> dict[str, Any]:
    form = await request.form(max_files=1, max_fields=4)
    try:
        upload_file = form.get("file")
        purpose = form.get("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise APIError(
                400, f"purpose must be 'batch', got {str(purpose)[:40]!r}", param="purpose"
            )
        if upload_file is None or isinstance(upload_file, str):
            raise APIError(400, "'file' is required: the file's bytes, multipart", param="file")
        file_id = f"file-{uuid.uuid4().hex}"
        store = _store(request)
        size = await run_in_threadpool(store.save, content_name(file_id), upload_file.file)
        if size == 0:
            await run_in_threadpool(store.delete, content_name(file_id))
            raise APIError(400, "the file is empty", param="file")
        redis = request.app.state.client.redis
        name = upload_file.filename or "upload.jsonl"
        return await run_in_threadpool(add, redis, file_id, name, str(purpose), size)
    finally:
        await form.close()


@router.get("/v1/files")
async def list_files(
    request: Request,
    purpose: str | None = None,
    limit: int = 10_000,
    after: str | None = None,
    order: str = "desc",
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIST:
        raise APIError(400, f"limit must be 1 to {MAX_LIST}", param="limit")
    if order not in ("asc", "desc"):
        raise APIError(400, "order must be 'asc' or 'desc'", param="order")
    redis = request.app.state.client.redis

    def page() -> dict[str, Any]:
        ids = [i.decode() for i in (redis.zrange(INDEX, 0, -1, desc=order == "desc"))]
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in ids else []
        data = []
        for file_id in ids:
            found = record(redis, file_id)
            if found is not None and purpose in (None, found["purpose"]):
                data.append(found)
            if len(data) > limit:
                break
        more = len(data) > limit
        data = data[:limit]
        first = data[0]["id"] if data else None
        last = data[-1]["id"] if data else None
        return {
            "object": "list",
            "data": data,
            "first_id": first,
            "last_id": last,
            "has_more": more,
        }

    return await run_in_threadpool(page)


@router.get("/v1/files/{file_id}")
async def retrieve(file_id: str, request: Request) -> dict[str, Any]:
    return await run_in_threadpool(require, request.app.state.client.redis, file_id)


@router.get("/v1/files/{file_id}/content")
async def content(file_id: str, request: Request) -> StreamingResponse:
    await run_in_threadpool(require, request.app.state.client.redis, file_id)
    store = _store(request)
    if not await run_in_threadpool(store.exists, content_name(file_id)):
        raise APIError(
            404, f"the bytes of file {file_id!r} are gone from the store", "file_not_found"
        )
    blocks = iterate_in_threadpool(store.read(content_name(file_id)))
    return StreamingResponse(blocks, media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}")
async def delete(file_id: str, request: Request) -> dict[str, Any]:
    redis = request.app.state.client.redis
    await run_in_threadpool(require, redis, file_id)

    def drop() -> None:
        _store(request).delete(content_name(file_id))
        pipe = redis.pipeline()
        pipe.delete(PREFIX + file_id)
        pipe.zrem(INDEX, file_id)
        pipe.execute()

    await run_in_threadpool(drop)
    return {"id": file_id, "object": "file", "deleted": True}
