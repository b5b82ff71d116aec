"""``GET /v1/models`` and ``GET /v1/models/{id}``: the fleet's catalog (models and A/B
aliases) as its workers publish it, in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from gateway.errors import APIError
from tasks.contract import catalog as fleet_catalog

router = APIRouter()


def _entries(redis: Any) -> dict[str, dict[str, Any]]:
    found = fleet_catalog.read(redis)
    entries = {}
    for name, model in found.models.items():
        entries[name] = _entry(name, int(model.published), "embedfleet")
    for name in found.aliases:
        entries[name] = _entry(name, 0, "embedfleet:alias")
    return dict(sorted(entries.items()))


def _entry(name: str, created: int, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    entries = await run_in_threadpool(_entries, request.app.state.client.redis)
    return {"object": "list", "data": list(entries.values())}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    entries = await run_in_threadpool(_entries, request.app.state.client.redis)
    if model_id not in entries:
        raise APIError(
            404, f"the model {model_id[:80]!r} does not exist", "model_not_found", "model"
        )
    return entries[model_id]
