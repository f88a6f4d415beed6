"""The FastAPI application: what Postgres cannot do itself, around the SQL API."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from loopctl import __version__, gateway, health
from loopctl.config import Settings
from loopctl.db import make_pool
from loopctl.knowledge import http as knowledge_http
from loopctl.knowledge.embeddings import LocalEmbedder, embeddings_router
from loopctl.mcp_tools.mount import mount_mcp
from loopctl.signup.router import router as signup_router


def create_app(settings: Settings, database_url: str) -> FastAPI:
    pool = make_pool(database_url, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=False)
        await gateway.start(app)
        if serves_local_model and settings.embeddings_preload:
            threading.Thread(target=LocalEmbedder.preload, name="embeddings-preload",
                             daemon=True).start()
        try:
            async with mcp_running:
                yield
        finally:
            await gateway.stop(app)
            pool.close()

    app = FastAPI(
        title="loopctl",
        version=__version__,
        summary="Structural trust for AI development loops",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.settings = settings
    app.state.pool = pool
    app.include_router(health.router)
    mcp_running = mount_mcp(app)
    app.include_router(signup_router)
    serves_local_model = settings.embeddings_serve and not settings.embeddings_url
    if serves_local_model:
        app.include_router(embeddings_router(LocalEmbedder(), settings.embeddings_api_key))
    gateway.install(app, settings, database_url)  # /api/v1, /rpc, PostgREST views, docs
    app.router.routes.extend(knowledge_http.routes)  # the vault ZIP export
    return app
