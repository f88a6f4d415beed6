"""OpenAPI 3.1 for the /api/v1 routes, built from their declarations (request and response
schemas and an example for every operation), merged into the document of the app's other
routes."""

from __future__ import annotations

import re
from typing import Any

from loopctl.gateway.declare import Route

ERROR_STATUSES = {
    "400": "Malformed input (bad JSON, a value of the wrong type)",
    "401": "No, invalid, revoked or expired API key",
    "403": "The key's role may not do this",
    "404": "Unknown id (another tenant's id included)",
    "409": "Wrong state, a gate refused, or a conflict",
    "413": "Input too large",
    "422": "Validation failed",
    "429": "Rate limit exceeded (see Retry-After)",
    "501": "Declared, but its SQL function does not exist in this database yet",
    "503": "Database unavailable",
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "details": {}, "hint": {"type": ["string", "null"]}}}},
}
RATE_HEADERS = {name: {"description": desc, "schema": {"type": "integer"}} for name, desc in (
    ("X-RateLimit-Limit", "requests allowed per minute for this key"),
    ("X-RateLimit-Remaining", "requests left in the current window"),
    ("X-RateLimit-Reset", "Unix time when the window resets"))}
META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"limit": {"type": ["integer", "null"]}, "offset": {"type": "integer"},
                   "total": {"type": ["integer", "null"]}, "has_more": {"type": "boolean"}}}


def envelope_schema(r: Route) -> dict[str, Any]:
    data = r.data_schema or {}
    if r.envelope == "raw":
        return data
    if r.envelope == "list":
        return {"type": "object", "required": ["data", "meta"],
                "properties": {"data": {"type": "array", "items": data}, "meta": META_SCHEMA}}
    if r.envelope == "transition":
        data = {"type": "object", "required": ["story", "next_actions"],
                "properties": {"story": {"type": "object"},
                               "next_actions": {"type": "array"}}} | (r.data_schema or {})
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


def envelope_example(r: Route) -> Any:
    data = r.data_example
    if r.envelope == "raw":
        return data if data is not None else {}
    if r.envelope == "list":
        items = data if isinstance(data, list) else ([data] if data is not None else [])
        return {"data": items, "meta": {"limit": 50, "offset": 0, "has_more": False}}
    if r.envelope == "transition" and data is None:
        data = {"story": {"id": "7d9f3c1e-0000-4000-8000-000000000001",
                          "agent_status": "assigned", "verified_status": "unverified"},
                "next_actions": ["start"]}
    return {"data": data if data is not None else {}}


def _example_value(schema: dict[str, Any]) -> Any:
    if "example" in schema:
        return schema["example"]
    if schema.get("format") == "uuid":
        return "7d9f3c1e-0000-4000-8000-000000000001"
    kind = schema.get("type")
    samples = {"string": "text", "integer": 1, "boolean": True, "array": [], "object": {}}
    return samples.get(kind) if isinstance(kind, str) else None


def operation(r: Route, path: str, operation_id: str) -> dict[str, Any]:
    params = []
    for p in r.args.values():
        if p.source in ("path", "query"):
            params.append({"name": p.name, "in": p.source, "required": p.required,
                           "schema": p.schema,
                           **({"description": p.description} if p.description else {})})
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": r.summary or f"{r.method} {path}",
        "description": (r.description + "\n\n" if r.description else "")
        + f"SQL: `{r.function}`." + (f" Roles: {', '.join(r.roles)}." if r.roles else ""),
        "tags": [r.tag or "api"],
        "x-sql-function": r.function,
        "x-roles": list(r.roles),
        "parameters": params,
    }
    if r.anonymous:
        op["security"] = [{}, {"bearer": []}]
    whole = next((p for p in r.args.values() if p.source == "whole_body"), None)
    if whole is not None or r.body_params:
        if whole is not None:
            schema = whole.schema
        else:
            schema = {"type": "object", "additionalProperties": False,
                      "properties": {p.name: p.schema | (
                          {"description": p.description} if p.description else {})
                                     for p in r.body_params.values()}}
            required = [p.name for p in r.body_params.values() if p.required]
            if required:
                schema["required"] = required
        example = r.request_example
        if example is None:
            example = {p.name: _example_value(p.schema) for p in r.body_params.values()
                       if p.required}
        op["requestBody"] = {"required": whole is not None or any(
            p.required for p in r.body_params.values()),
            "content": {"application/json": {"schema": schema, "example": example}}}
    statuses = {r.status} | ({r.status_when[2]} if r.status_when else set())
    responses: dict[str, Any] = {}
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": "Success", "headers": RATE_HEADERS,
            "content": {"application/json": {"schema": envelope_schema(r),
                                             "example": envelope_example(r)}}}
    for status, desc in ERROR_STATUSES.items():
        responses[status] = {
            "description": desc, "headers": RATE_HEADERS,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                             "example": {"error": {
                                                 "code": "example_code", "message": desc,
                                                 "details": None, "hint": None}}}}}
    op["responses"] = responses
    return op


def add_routes(doc: dict[str, Any], routes: list[Route]) -> dict[str, Any]:
    paths = doc.setdefault("paths", {})
    seen: set[str] = set()
    for r in routes:
        for i, path in enumerate((r.path, *r.aliases)):
            base = re.sub(r"\W+", "_", f"{r.method.lower()}_{r.function_name}").strip("_")
            op_id = base if i == 0 else f"{base}_alias{i}"
            n = 2
            while op_id in seen:
                op_id, n = f"{base}_{n}", n + 1
            seen.add(op_id)
            paths.setdefault(path, {})[r.method.lower()] = operation(r, path, op_id)
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "An API key (lc_...) or a token from POST /api/v1/auth/token"}
    doc["security"] = [{"bearer": []}]
    return doc
