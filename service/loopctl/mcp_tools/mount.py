"""Serve the MCP tools at /mcp inside the FastAPI app, calling the app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
from fastapi import FastAPI

from loopctl.mcp_tools.client import KeyRing, LoopctlApi
from loopctl.mcp_tools.server import build_server


def mount_mcp(app: FastAPI) -> AbstractAsyncContextManager[None]:
    """Adds the /mcp route; returns the context the app's lifespan must enter."""
    # Tools reach the API through ASGI in the same process: no loopback hop, same gateway.
    api = LoopctlApi("http://loopctl.internal", transport=httpx.ASGITransport(app=app))
    # Over HTTP every tool uses the caller's own bearer key, never the server's environment.
    server = build_server(api, KeyRing())
    mcp_app = server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True,
                                         json_response=True)
    for route in reversed(mcp_app.routes):
        app.router.routes.insert(0, route)

    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return running()
