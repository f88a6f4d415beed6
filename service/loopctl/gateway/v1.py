"""The /api/v1 surface: one Starlette route per declaration (plus its aliases), each
running its one SQL function through the gateway and wrapping the result in the SPEC §7
envelope. Errors are {"error": {code, message, details, hint}}."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from loopctl.gateway.auth import caller_from_header
from loopctl.gateway.calls import function_call
from loopctl.gateway.catalog import Function
from loopctl.gateway.declare import Route
from loopctl.gateway.errors import HttpError
from loopctl.gateway.executor import Gateway, Outcome, rate_headers
from loopctl.gateway.http import forwarded_headers, json_response, read_json

Endpoint = Callable[[Request], Awaitable[Response]]


def error_response(error: HttpError) -> Response:
    return json_response(error.api_body(), error.status, error.headers)


async def resolve_function(gateway: Gateway, route: Route) -> Function:
    fn = gateway.catalog.function(route.schema_name, route.function_name)
    if fn is None:  # landed since startup? re-read the catalog (at most 4 times a second)
        await gateway.reload_catalog(min_age=0.25)
        fn = gateway.catalog.function(route.schema_name, route.function_name)
    if fn is None:
        raise HttpError(501, "not_implemented",
                        f"{route.method} {route.path} is declared but {route.function} does "
                        "not exist in this database yet", pgrst_code="PGRST202")
    return fn


def _query_value(raw: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "array":
        return [v for v in raw.split(",") if v != ""]
    if kind == "boolean":
        low = raw.lower()
        if low in ("true", "false"):
            return low == "true"
        raise HttpError(400, "invalid_parameter", f"expected true or false, got {raw!r}")
    return raw  # cast by SQL to the parameter's type (bad input -> 400)


async def collect_args(route: Route, request: Request) -> dict[str, Any]:
    """Named SQL arguments from the path, query string and body, as declared."""
    args: dict[str, Any] = {}
    payload: Any = None
    if route.takes_body:
        payload = await read_json(request)
        if route.body_params and payload is None:
            payload = {}
        if route.body_params and not isinstance(payload, dict):
            raise HttpError(400, "invalid_body", "the request body must be a JSON object")
        if route.body_params:
            unknown = sorted(set(payload) - {p.name for p in route.body_params.values()})
            if unknown:
                raise HttpError(422, "unknown_field",
                                f"unknown field(s) in the request body: {', '.join(unknown)}",
                                {"unknown_fields": unknown,
                                 "accepted_fields": sorted(
                                     p.name for p in route.body_params.values())})
    missing: list[str] = []
    for arg, param in route.args.items():
        if param.source == "path":
            args[arg] = request.path_params[param.name]
        elif param.source == "query":
            if param.name in request.query_params:
                args[arg] = _query_value(request.query_params[param.name], param.schema)
            elif param.required:
                missing.append(param.name)
        elif param.source == "body":
            if param.name in payload:
                args[arg] = payload[param.name]
            elif param.required:
                missing.append(param.name)
        elif param.source == "whole_body":
            if payload is None:
                raise HttpError(400, "invalid_body", "a JSON request body is required")
            args[arg] = payload
        elif param.source == "const":
            args[arg] = param.value
    if missing:
        raise HttpError(422, "missing_field", f"required: {', '.join(missing)}",
                        {"missing_fields": missing})
    return args


def _check_signature(route: Route, fn: Function, args: dict[str, Any]) -> None:
    unsupported = [a for a in args if fn.arg(a) is None]
    if unsupported:  # a declaration ahead of its function: say so instead of guessing
        raise HttpError(422, "unsupported_field",
                        f"{route.function} does not take: {', '.join(unsupported)}",
                        {"unsupported": unsupported})
    missing = [a.name for a in fn.args if a.required and a.name not in args]
    if missing:
        raise HttpError(422, "missing_field", f"required: {', '.join(missing)}",
                        {"missing_fields": missing})


PASSTHROUGH_KEYS = {"data", "meta", "has_more", "next_cursor"}


def envelope(route: Route, result: Any, args: dict[str, Any]) -> Any:
    if route.envelope == "raw":
        return result
    if (route.envelope != "list" and isinstance(result, dict) and "data" in result
            and set(result) <= PASSTHROUGH_KEYS):
        return result  # the function enveloped its own result
    if route.envelope != "list":
        return {"data": result}
    limit = _int(args.get("limit"))
    offset = _int(args.get("offset")) or 0
    if isinstance(result, dict) and "data" in result:
        # The function paginates itself (e.g. the change feed's cursor): keep its fields.
        meta = {"limit": limit, "offset": offset} | (result.get("meta") or {})
        meta.setdefault("has_more", bool(result.get("has_more", False)))
        return result | {"meta": meta}
    items = result if isinstance(result, list) else ([] if result is None else [result])
    meta = {"limit": limit, "offset": offset,
            "has_more": bool(limit is not None and len(items) >= limit)}
    return {"data": items, "meta": meta}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def make_endpoint(route: Route) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        try:
            caller = caller_from_header(request.headers.get("authorization"),
                                        gateway.config.jwt_secret)
            if caller.anonymous and not route.anonymous:
                raise HttpError(401, "unauthenticated", "a valid API key is required",
                                hint="send Authorization: Bearer lc_...",
                                headers={"WWW-Authenticate": "Bearer"})
            args = await collect_args(route, request)
            fn = await resolve_function(gateway, route)
            _check_signature(route, fn, args)
            outcome: Outcome = await gateway.run(
                caller, [function_call(fn, args)], method=request.method,
                path=request.url.path, headers=forwarded_headers(request),
                read_only=fn.read_only and request.method == "GET")
        except HttpError as error:
            if error.pgrst_code == "42883":  # dropped since the catalog was read?
                await gateway.reload_catalog(min_age=0.2)
                if gateway.catalog.function(route.schema_name, route.function_name) is None:
                    error = HttpError(501, "not_implemented", f"{route.function} does not "
                                      "exist in this database", pgrst_code="PGRST202")
            return error_response(error)
        text = outcome.text
        result = json.loads(text) if text else None
        status = outcome.status or route.success_status(args)
        return json_response(envelope(route, result, args), status,
                             rate_headers(outcome.rate) | outcome.headers)

    return endpoint


def _specificity(path: str) -> list[int]:
    # Literal segments before parameters: /stories/ready must win over /stories/{id}.
    return [1 if seg.startswith("{") else 0 for seg in path.strip("/").split("/")]


def starlette_routes(routes: list[Route]) -> list[StarletteRoute]:
    out: list[tuple[list[int], StarletteRoute]] = []
    for r in routes:
        endpoint = make_endpoint(r)
        for p in (r.path, *r.aliases):
            out.append((_specificity(p), StarletteRoute(
                p, endpoint, methods=[r.method], name=f"{r.function}:{r.method}:{p}")))
    out.sort(key=lambda pair: pair[0])
    return [sr for _, sr in out]
