"""The PostgREST-compatible surface over the exposed schema: POST /rpc/<fn> (JSON named
arguments), GET /rpc/<fn> for read-only functions, GET /<view> with PostgREST's filters,
select=, order=, limit/offset, Range / Content-Range and Prefer: count=exact. Errors are
PostgREST's bare body {code, message, details, hint}."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from loopctl.gateway.auth import caller_from_header
from loopctl.gateway.calls import function_call
from loopctl.gateway.catalog import Relation, quote_ident
from loopctl.gateway.errors import HttpError
from loopctl.gateway.executor import Gateway, quote_literal, rate_headers
from loopctl.gateway.http import forwarded_headers, json_response, read_json

RESERVED = {"select", "order", "limit", "offset", "columns", "on_conflict"}
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
             "like": "like", "ilike": "ilike"}
IS_VALUES = {"null": "null", "not_null": "not null", "true": "true", "false": "false",
             "unknown": "unknown"}
SINGLE_OBJECT = "application/vnd.pgrst.object+json"
_RANGE = re.compile(r"^(?:items=)?\s*(\d+)-(\d*)\s*$")


def _bad(message: str, details: Any = None, hint: str | None = None) -> HttpError:
    return HttpError(400, "invalid_query", message, details, hint, pgrst_code="PGRST100")


def error_response(error: HttpError) -> Response:
    return json_response(error.postgrest_body(), error.status, error.headers)


def _schema(request: Request, gateway: Gateway, header: str) -> str:
    schemas = gateway.config.db_schemas
    wanted = request.headers.get(header)
    if wanted is None:
        return schemas[0]
    if wanted not in schemas:
        raise HttpError(406, "invalid_schema", f"The schema must be one of: {', '.join(schemas)}",
                        pgrst_code="PGRST106")
    return wanted


# -- filters -------------------------------------------------------------------------------
def _in_list(raw: str) -> list[str]:
    if not (raw.startswith("(") and raw.endswith(")")):
        raise _bad(f"in. expects a parenthesised list, got {raw!r}")
    items, current, quoted, i = [], "", False, 0
    inner = raw[1:-1]
    while i < len(inner):
        ch = inner[i]
        if quoted and ch == "\\" and i + 1 < len(inner):
            current += inner[i + 1]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += ch
        i += 1
    if inner:
        items.append(current)
    return items


def condition(column: str, expression: str) -> str:
    negate = expression.startswith("not.")
    if negate:
        expression = expression[4:]
    op, sep, value = expression.partition(".")
    if not sep:
        raise _bad(f"failed to parse filter ({expression})", hint="use column=op.value")
    col = quote_ident(column)
    if op in OPERATORS:
        if op in ("like", "ilike"):
            value = value.replace("*", "%")
        sql = f"{col} {OPERATORS[op]} {quote_literal(value)}"
    elif op == "in":
        items = _in_list(value)
        sql = (f"{col} in ({', '.join(quote_literal(v) for v in items)})" if items
               else "false")
    elif op == "is":
        if value.lower() not in IS_VALUES:
            raise _bad(f"is. expects null, not_null, true, false or unknown, got {value!r}")
        sql = f"{col} is {IS_VALUES[value.lower()]}"
    else:
        raise _bad(f"unknown operator {op!r}", hint="eq neq gt gte lt lte like ilike in is")
    return f"not ({sql})" if negate else sql


def _columns(rel: Relation, select: str | None) -> str:
    if not select or select.strip() == "*":
        return "*"
    out = []
    for item in select.split(","):
        item = item.strip()
        alias, _, column = item.rpartition(":") if ":" in item else ("", "", item)
        if column not in rel.columns:
            raise HttpError(400, "undefined_column",
                            f"column {rel.name}.{column} does not exist",
                            pgrst_code="42703")
        out.append(f"{quote_ident(column)} as {quote_ident(alias)}" if alias
                   else quote_ident(column))
    return ", ".join(out)


def _order(rel: Relation, order: str | None) -> str:
    if not order:
        return ""
    terms = []
    for term in order.split(","):
        column, *mods = term.strip().split(".")
        if column not in rel.columns:
            raise HttpError(400, "undefined_column",
                            f"column {rel.name}.{column} does not exist", pgrst_code="42703")
        sql = quote_ident(column)
        for mod in mods:
            words = {"asc": "asc", "desc": "desc", "nullsfirst": "nulls first",
                     "nullslast": "nulls last"}
            if mod not in words:
                raise _bad(f"unknown order modifier {mod!r}")
            sql += " " + words[mod]
        terms.append(sql)
    return " order by " + ", ".join(terms)


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise _bad(f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def _range(request: Request, max_rows: int | None) -> tuple[int, int | None]:
    offset = _int_param(request, "offset") or 0
    limit = _int_param(request, "limit")
    header = request.headers.get("range")
    if header:
        m = _RANGE.match(header)
        if not m:
            raise HttpError(416, "invalid_range", f"cannot parse Range {header!r}",
                            pgrst_code="PGRST103")
        start, end = int(m.group(1)), m.group(2)
        if end and int(end) < start:
            raise HttpError(416, "invalid_range", "range end before start",
                            pgrst_code="PGRST103")
        offset = start
        if end:
            span = int(end) - start + 1
            limit = span if limit is None else min(limit, span)
    if max_rows is not None:
        limit = max_rows if limit is None else min(limit, max_rows)
    return offset, limit


async def read_relation(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    name = request.path_params["relation"]
    try:
        caller = caller_from_header(request.headers.get("authorization"),
                                    gateway.config.jwt_secret)
        schema = _schema(request, gateway, "accept-profile")
        rel = gateway.catalog.relation(schema, name)
        if rel is None:
            await gateway.reload_catalog(min_age=0.25)
            rel = gateway.catalog.relation(schema, name)
        if rel is None:
            raise HttpError(404, "relation_not_found",
                            f"Could not find the table '{schema}.{name}' in the schema cache",
                            pgrst_code="PGRST205")
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "method_not_allowed",
                            f"{request.method} is not supported on {schema}.{name}",
                            pgrst_code="PGRST101")
        where = []
        for key, value in request.query_params.multi_items():
            if key in RESERVED:
                continue
            if key not in rel.columns:
                raise HttpError(400, "undefined_column",
                                f"column {rel.name}.{key} does not exist", pgrst_code="42703")
            where.append(condition(key, value))
        where_sql = (" where " + " and ".join(where)) if where else ""
        offset, limit = _range(request, gateway.config.db_max_rows)
        page = (f" limit {limit}" if limit is not None else "") + (
            f" offset {offset}" if offset else "")
        prefer = request.headers.get("prefer", "")
        exact = "count=exact" in prefer
        count_sql = (f"(select count(*) from {rel.qualified}{where_sql})" if exact
                     else "null::bigint")
        call = (f"select {count_sql}, count(_t), coalesce(json_agg(_t), '[]')::text from "
                f"(select {_columns(rel, request.query_params.get('select'))} "
                f"from {rel.qualified}{where_sql}{_order(rel, request.query_params.get('order'))}"
                f"{page}) _t")
        outcome = await gateway.run(caller, [call], method=request.method,
                                    path=request.url.path, headers=forwarded_headers(request),
                                    read_only=True)
    except HttpError as error:
        return error_response(error)
    total, n, text = outcome.rows[-1][0]
    end = f"{offset}-{offset + n - 1}" if n else "*"
    headers = rate_headers(outcome.rate) | outcome.headers | {
        "Content-Range": f"{end}/{total if total is not None else '*'}"}
    if SINGLE_OBJECT in request.headers.get("accept", ""):
        rows = json.loads(text)
        if len(rows) != 1:
            return error_response(HttpError(
                406, "not_single_object", "JSON object requested, multiple (or no) rows "
                "returned", f"The result contains {len(rows)} rows", pgrst_code="PGRST116"))
        return json_response(rows[0], 200, headers)
    return json_response(None, outcome.status or 200, headers, raw=text)


async def call_rpc(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    name = request.path_params["function"]
    try:
        caller = caller_from_header(request.headers.get("authorization"),
                                    gateway.config.jwt_secret)
        if request.method == "POST":
            schema = _schema(request, gateway, "content-profile")
            payload = await read_json(request)
            if payload is None:
                payload = {}
            if not isinstance(payload, dict):
                raise HttpError(400, "invalid_body", "the body must be a JSON object of "
                                "named arguments", pgrst_code="PGRST102")
            args: dict[str, Any] = payload
        else:
            schema = _schema(request, gateway, "accept-profile")
            args = {k: v for k, v in request.query_params.items() if k not in RESERVED}
        fn = gateway.catalog.function(schema, name, set(args))
        if fn is None:
            await gateway.reload_catalog(min_age=0.25)
            fn = gateway.catalog.function(schema, name, set(args))
        if fn is None:
            raise HttpError(
                404, "function_not_found",
                f"Could not find the function {schema}.{name}({', '.join(sorted(args))}) in "
                "the schema cache", None,
                "check the function name and its named arguments", pgrst_code="PGRST202")
        if request.method == "GET" and not fn.read_only:
            raise HttpError(405, "method_not_allowed",
                            f"{schema}.{name} is volatile: call it with POST",
                            pgrst_code="PGRST101")
        outcome = await gateway.run(caller, [function_call(fn, args)], method=request.method,
                                    path=request.url.path, headers=forwarded_headers(request),
                                    read_only=request.method == "GET")
    except HttpError as error:
        return error_response(error)
    headers = rate_headers(outcome.rate) | outcome.headers
    if fn.return_type == "void":
        return Response(status_code=outcome.status or 204, headers=headers)
    return json_response(None, outcome.status or 200, headers, raw=outcome.text or "null")


def rpc_routes() -> list[StarletteRoute]:
    return [StarletteRoute("/rpc/{function}", call_rpc, methods=["GET", "POST"],
                           name="postgrest:rpc")]


def relation_route() -> StarletteRoute:
    """Catch-all `/{relation}`: appended last, after every other route of the app."""
    return StarletteRoute("/{relation}", read_relation,
                          methods=["GET", "HEAD", "POST", "PATCH", "DELETE"],
                          name="postgrest:relation")
