"""GET /api/v1/knowledge/export: the Obsidian vault ZIP. Authentication, the request
transaction and errors are the gateway's (same as every /api/v1 route); the SQL function
api.knowledge_export decides what the key may export, Python only packs the ZIP."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from loopctl.gateway.auth import caller_from_header
from loopctl.gateway.calls import function_call
from loopctl.gateway.declare import UUID, query, route
from loopctl.gateway.errors import HttpError
from loopctl.gateway.executor import Gateway
from loopctl.gateway.http import forwarded_headers
from loopctl.gateway.v1 import collect_args, error_response, resolve_function
from loopctl.knowledge.export import build_vault

EXPORT = route("GET", "/api/v1/knowledge/export", "api.knowledge_export", tag="knowledge",
               args={"p_project_id": query("project_id", UUID)},
               roles=("user", "orchestrator", "agent"),
               summary="Published articles as an Obsidian vault (application/zip)")


async def export_vault(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        caller = caller_from_header(request.headers.get("authorization"),
                                    gateway.config.jwt_secret)
        if caller.anonymous:
            raise HttpError(401, "unauthenticated", "a valid API key is required",
                            hint="send Authorization: Bearer lc_...",
                            headers={"WWW-Authenticate": "Bearer"})
        args = await collect_args(EXPORT, request)
        fn = await resolve_function(gateway, EXPORT)
        outcome = await gateway.run(caller, [function_call(fn, args)], method="GET",
                                    path=request.url.path, headers=forwarded_headers(request))
    except HttpError as error:
        return error_response(error)
    articles = json.loads(outcome.text or "{}").get("articles", [])
    return Response(build_vault(articles), media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="knowledge-vault.zip"'})


routes = [StarletteRoute(EXPORT.path, export_vault, methods=["GET"])]
