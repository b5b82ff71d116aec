"""``/v1/batches``: create, retrieve, list (``after``, ``limit``), cancel, in OpenAI's
shapes (see ``gateway.batch_runs`` for the life of one)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from gateway import batch_runs, batch_store, files
from gateway.errors import APIError
from gateway.requests import parse_json
from tasks.contract.logs import event_logger
from tasks.io.openai import URL

log = event_logger(__name__)

#: Seconds between two looks at the open batches by each gateway (so a batch's files
#: are made when its job ends even if nobody reads it).
WATCH_S = 5.0
#: Most batches one list call returns (OpenAI's limit).
MAX_LIST = 100
#: Keys and characters of a batch's metadata (OpenAI's limits).
MAX_METADATA_KEYS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512

router = APIRouter()


def _metadata(given: Any) -> dict[str, str] | None:
    if given is None:
        return None
    if not isinstance(given, dict) or len(given) > MAX_METADATA_KEYS:
        raise APIError(
            400, f"metadata must be an object of at most {MAX_METADATA_KEYS} keys", param="metadata"
        )
    for key, value in given.items():
        if (
            len(key) > MAX_METADATA_KEY
            or not isinstance(value, str)
            or len(value) > MAX_METADATA_VALUE
        ):
            raise APIError(
                400,
                f"metadata values must be strings of at most {MAX_METADATA_VALUE} characters "
                f"under keys of at most {MAX_METADATA_KEY}",
                param="metadata",
            )
    return dict(given)


@router.post("/v1/batches")
async def create(request: Request) -> dict[str, Any]:
    payload = parse_json(await request.body())
    if payload.get("endpoint") != URL:
        raise APIError(400, f"endpoint must be {URL!r}: this fleet embeds", param="endpoint")
    if payload.get("completion_window") != "24h":
        raise APIError(400, "completion_window must be '24h'", param="completion_window")
    file_id = payload.get("input_file_id")
    if not isinstance(file_id, str):
        raise APIError(400, "'input_file_id' is required", param="input_file_id")
    metadata = _metadata(payload.get("metadata"))
    client = request.app.state.client
    found = await run_in_threadpool(files.require, client.redis, file_id)
    if found["purpose"] != "batch":
        raise APIError(
            400,
            f"file {file_id} has purpose {found['purpose']!r}, not 'batch'",
            param="input_file_id",
        )
    batch = batch_store.BatchRecord(
        batch_store.new_object(f"batch_{uuid.uuid4().hex}", file_id, URL, "24h", metadata)
    )
    await run_in_threadpool(batch_store.save, client.redis, batch)
    await run_in_threadpool(batch_runs.start, client, request.app.state.files, batch)
    return batch.obj


def _load(request: Request, batch_id: str) -> batch_store.BatchRecord:
    found = batch_store.load(request.app.state.client.redis, batch_id)
    if found is None:
        raise APIError(404, f"no batch {batch_id[:80]!r}", "batch_not_found", "batch_id")
    return found


def _current(request: Request, batch_id: str) -> dict[str, Any]:
    batch = _load(request, batch_id)
    return batch_runs.refresh(request.app.state.client, request.app.state.files, batch).obj


@router.get("/v1/batches/{batch_id}")
async def retrieve(batch_id: str, request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_current, request, batch_id)


@router.get("/v1/batches")
async def list_batches(
    request: Request, after: str | None = None, limit: int = 20
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIST:
        raise APIError(400, f"limit must be 1 to {MAX_LIST}", param="limit")

    def page() -> dict[str, Any]:
        ids, more = batch_store.page(request.app.state.client.redis, after, limit)
        data = [_current(request, i) for i in ids]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }

    return await run_in_threadpool(page)


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel(batch_id: str, request: Request) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        batch = _load(request, batch_id)
        if batch.status not in ("validating", "in_progress"):
            raise APIError(
                400, f"batch {batch_id} is {batch.status}: only a running batch can be cancelled"
            )
        return batch_runs.cancel(request.app.state.client, batch).obj

    return await run_in_threadpool(run)


async def watch(app: Any) -> None:
    """Every :data:`WATCH_S`, move the open batches on (run by each gateway)."""
    client, store = app.state.client, app.state.files
    while True:
        await asyncio.sleep(WATCH_S)
        try:
            await run_in_threadpool(watch_once, client, store)
        except Exception as exc:  # Redis away for a while: the next round tries again
            log.warning("event=batch_watch_failed error=%r", exc)


def watch_once(client: Any, store: Any) -> None:
    for batch_id in batch_store.open_ids(client.redis):
        batch = batch_store.load(client.redis, batch_id)
        if batch is not None:
            batch_runs.refresh(client, store, batch)
