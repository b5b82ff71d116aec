"""The gateway's ASGI app: routes, auth, errors in OpenAI's shape, body limits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from gateway import batches, embeddings, errors, files, models
from gateway.auth import KeyCheck
from gateway.filestore import FileStore
from gateway.fleet_metrics import FleetCollector
from gateway.http_metrics import HttpMetrics
from gateway.limits import BodyLimit
from gateway.usage import TokenCounter
from tasks.contract import catalog
from tasks.contract.settings import Settings


def build_app(settings: Settings, client: Any = None, no_auth: bool = False) -> Any:
    """The ASGI app serving the fleet behind ``client`` (an ``EmbeddingClient``; one is
    made from ``settings`` when None). Keys are ``settings.keys`` unless ``no_auth``."""
    if client is None:
        from producers.client import EmbeddingClient

        client = EmbeddingClient(settings=settings)
    app = FastAPI(
        title="embedfleet", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan
    )
    app.state.client = client
    app.state.settings = settings
    app.state.files = FileStore(settings.files_at)
    app.state.tokens = TokenCounter(client.config_source or settings.config_source)
    errors.install(app)
    check = KeyCheck(() if no_auth else settings.keys)
    guarded = [Depends(check)]
    app.include_router(embeddings.router, dependencies=guarded)
    app.include_router(models.router, dependencies=guarded)
    app.include_router(files.router, dependencies=guarded)
    app.include_router(batches.router, dependencies=guarded)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        try:
            live = await run_in_threadpool(catalog.live_workers, request.app.state.client.redis)
        except RedisError as exc:
            return errors.response(503, f"Redis does not answer: {exc}", "fleet_unavailable")
        if not live:
            return errors.response(503, "no live worker serves a model", "fleet_unavailable")
        return JSONResponse({"status": "ready", "workers": len(live)})

    registry = CollectorRegistry()
    steps = (client.app.conf.broker_transport_options or {}).get("priority_steps")
    registry.register(FleetCollector(client.redis, steps))

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    static = {getattr(r, "path", "") for r in app.routes if "{" not in getattr(r, "path", "{")}
    return HttpMetrics(BodyLimit(app), registry, static)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    watcher = asyncio.create_task(batches.watch(app))
    try:
        yield
    finally:
        watcher.cancel()
