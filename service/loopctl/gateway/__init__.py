"""loopctl's HTTP gateway for the SQL API: the /api/v1 routes (declared in loopctl.routes)
and a PostgREST-compatible surface, both running each request as PostgREST would (see
executor.py). Wiring: `install(app, settings, admin_url)` from create_app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from loopctl.config import Settings
from loopctl.gateway import discovery, openapi, pgrst_config, postgrest, swagger, v1
from loopctl.gateway.credentials import authenticator_password, gateway_url
from loopctl.gateway.declare import Route
from loopctl.gateway.executor import Gateway


def install(app: FastAPI, settings: Settings, admin_url: str,
            routes: list[Route] | None = None) -> Gateway:
    from loopctl.routes import all_routes

    declared = all_routes() if routes is None else routes
    config = pgrst_config.load()
    url = gateway_url(admin_url, authenticator_password(settings, admin_url))
    gateway = Gateway(url, config)
    app.state.gateway = gateway
    app.state.gateway_routes = declared
    app.router.routes.extend(discovery.make_routes(declared))
    app.router.routes.extend(v1.starlette_routes(declared))
    app.router.routes.extend(postgrest.rpc_routes())
    app.router.routes.extend(swagger.routes())

    def build_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, summary=app.summary,
                              routes=app.routes)
            app.openapi_schema = openapi.add_routes(doc, declared)
        return app.openapi_schema

    app.openapi = build_openapi  # type: ignore[method-assign]
    return gateway


async def start(app: FastAPI) -> None:
    """On startup: open the pool, load the schema cache, and put the catch-all
    `/{relation}` route last, behind every route other modules added."""
    gateway: Gateway = app.state.gateway
    await gateway.open()
    app.router.routes.append(postgrest.relation_route())


async def stop(app: FastAPI) -> None:
    await app.state.gateway.close()
