"""Discovery and the token exchange: GET /api/v1/routes, GET /.well-known/loopctl,
POST /api/v1/auth/token."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from loopctl import __version__
from loopctl.gateway.auth import TOKEN_TTL_DEFAULT, TOKEN_TTL_MAX, caller_from_header, mint_token
from loopctl.gateway.declare import Route
from loopctl.gateway.errors import HttpError
from loopctl.gateway.executor import Gateway, rate_headers
from loopctl.gateway.http import forwarded_headers, json_response, read_json
from loopctl.gateway.v1 import error_response


def route_table(gateway: Gateway, routes: list[Route]) -> list[dict[str, Any]]:
    table = []
    for r in routes:
        implemented = gateway.catalog.function(r.schema_name, r.function_name) is not None
        table.append({"method": r.method, "path": r.path, "aliases": list(r.aliases),
                      "function": r.function, "roles": list(r.roles), "summary": r.summary,
                      "envelope": r.envelope, "status": r.status, "implemented": implemented})
    return table


def make_routes(routes: list[Route]) -> list[StarletteRoute]:
    async def list_routes(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        data = route_table(gateway, routes)
        return json_response({"data": data, "meta": {"limit": None, "offset": 0,
                                                     "total": len(data), "has_more": False}})

    async def well_known(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        return json_response({
            "name": "loopctl", "version": __version__,
            "api": {"base": "/api/v1", "routes": "/api/v1/routes",
                    "openapi": "/api/v1/openapi.json", "docs": ["/swaggerui", "/docs"]},
            "auth": {"scheme": "Bearer", "key_prefix": "lc_", "token": "/api/v1/auth/token",
                     "token_algorithm": "HS256"},
            "postgrest": {"rpc": "/rpc/{function}", "relations": "/{view}",
                          "schemas": list(gateway.config.db_schemas)},
            "health": "/health",
        })

    async def token(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        try:
            caller = caller_from_header(request.headers.get("authorization"),
                                        gateway.config.jwt_secret)
            if caller.anonymous:
                raise HttpError(401, "unauthenticated", "a valid API key is required",
                                headers={"WWW-Authenticate": "Bearer"})
            payload = await read_json(request) or {}
            if not isinstance(payload, dict) or set(payload) - {"expires_in"}:
                raise HttpError(422, "invalid_body", "the body may only hold expires_in")
            ttl = payload.get("expires_in", TOKEN_TTL_DEFAULT)
            if not isinstance(ttl, int) or isinstance(ttl, bool) or not (
                    60 <= ttl <= TOKEN_TTL_MAX):
                raise HttpError(422, "invalid_expires_in",
                                f"expires_in must be an integer from 60 to {TOKEN_TTL_MAX}")
            if len(gateway.config.jwt_secret) < 32:
                raise HttpError(501, "tokens_disabled", "jwt-secret is not configured")
            outcome = await gateway.run(caller, ["select api.whoami()::text"],
                                        method="POST", path=request.url.path,
                                        headers=forwarded_headers(request))
        except HttpError as error:
            return error_response(error)
        claims = outcome.claims or {}
        data = mint_token(claims, gateway.config.jwt_secret, ttl) | {
            "identity": json.loads(outcome.text or "null")}
        return json_response({"data": data}, 201, rate_headers(outcome.rate))

    return [
        StarletteRoute("/api/v1/routes", list_routes, methods=["GET"]),
        StarletteRoute("/.well-known/loopctl", well_known, methods=["GET"]),
        StarletteRoute("/api/v1/auth/token", token, methods=["POST"]),
    ]
