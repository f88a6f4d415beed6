"""Route declarations for /api/v1: method, path, the SQL function it calls, and how the
path, query string and JSON body map to the function's named arguments. A declaration
carries no logic; the SQL function decides everything (roles, gates, tenancy, errors).

    route("POST", "/api/v1/stories/{id}/claim", "api.claim_story",
          args={"story_id": path("id")}, envelope="transition",
          roles=("agent",), summary="Claim a contracted story")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Source = Literal["path", "query", "body", "whole_body", "const"]
Envelope = Literal["resource", "list", "transition", "raw"]

UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
OBJECT: dict[str, Any] = {"type": "object"}
ANY_JSON: dict[str, Any] = {}
LIMIT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 500}
OFFSET: dict[str, Any] = {"type": "integer", "minimum": 0}


@dataclass(frozen=True)
class Param:
    source: Source
    name: str
    schema: dict[str, Any]
    required: bool = False
    description: str = ""
    value: Any = None  # for source == "const"


def path(name: str, schema: dict[str, Any] | None = None, description: str = "") -> Param:
    return Param("path", name, schema or UUID, True, description)


def query(name: str, schema: dict[str, Any] | None = None, *, required: bool = False,
          description: str = "") -> Param:
    return Param("query", name, schema or STRING, required, description)


def body(name: str, schema: dict[str, Any] | None = None, *, required: bool = False,
         description: str = "") -> Param:
    return Param("body", name, STRING if schema is None else schema, required, description)


def whole_body(schema: dict[str, Any] | None = None, description: str = "") -> Param:
    """The whole JSON request body as one argument (e.g. an import payload)."""
    return Param("whole_body", "", schema or OBJECT, True, description)


def const(value: Any) -> Param:
    return Param("const", "", {}, False, value=value)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str  # "api.claim_story"
    args: dict[str, Param] = field(default_factory=dict)
    envelope: Envelope = "resource"
    status: int = 200
    # (argument, value, status): e.g. ("merge", True, 200) when ?merge=true answers 200.
    status_when: tuple[str, Any, int] | None = None
    roles: tuple[str, ...] = ()
    summary: str = ""
    description: str = ""
    tag: str = ""
    aliases: tuple[str, ...] = ()
    anonymous: bool = False  # callable without a key (the function still decides)
    request_example: Any = None
    data_schema: dict[str, Any] = field(default_factory=dict)  # schema of "data" items
    data_example: Any = None

    @property
    def schema_name(self) -> str:
        return self.function.split(".", 1)[0] if "." in self.function else "api"

    @property
    def function_name(self) -> str:
        return self.function.split(".", 1)[-1]

    @property
    def body_params(self) -> dict[str, Param]:
        return {k: p for k, p in self.args.items() if p.source == "body"}

    @property
    def takes_body(self) -> bool:
        return any(p.source in ("body", "whole_body") for p in self.args.values())

    def success_status(self, args: dict[str, Any]) -> int:
        if self.status_when:
            arg, value, status = self.status_when
            given = args.get(arg)
            if given == value or str(given).lower() == str(value).lower():
                return status
        return self.status


def route(method: str, path_: str, function: str, **kwargs: Any) -> Route:
    return Route(method.upper(), path_, function, **kwargs)
