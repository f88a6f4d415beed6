"""The HTTP side of the MCP tools: which key a tool uses, and calling /api/v1 with it.

Over stdio the keys come from the environment (LOOPCTL_AGENT_KEY, LOOPCTL_ORCH_KEY,
LOOPCTL_USER_KEY, with LOOPCTL_API_KEY as the fallback for any role). Over streamable HTTP
at /mcp the caller's own bearer key is used for every tool: the API decides what it may do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from mcp.server.mcpserver.exceptions import ToolError

# "reporter": reporting a story needs an agent identity that is not the implementer's, so
# the orchestrator key is preferred and an agent key (another agent) also qualifies.
KeyRole = Literal["agent", "orchestrator", "user", "reporter", "any"]

ENV_FOR_ROLE: dict[str, str] = {
    "agent": "LOOPCTL_AGENT_KEY",
    "orchestrator": "LOOPCTL_ORCH_KEY",
    "user": "LOOPCTL_USER_KEY",
}


@dataclass(frozen=True)
class KeyRing:
    """Keys by role; `bearer` (the HTTP caller's key) overrides them all."""

    keys: Mapping[str, str] = field(default_factory=dict)
    fallback: str | None = None
    bearer: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeyRing:
        env = os.environ if env is None else env
        keys = {role: env[var] for role, var in ENV_FOR_ROLE.items() if env.get(var)}
        return cls(keys=keys, fallback=env.get("LOOPCTL_API_KEY") or None)

    def key_for(self, role: KeyRole) -> str:
        if self.bearer:
            return self.bearer
        if role == "any":
            found = self.fallback or next(iter(self.keys.values()), None)
        elif role == "reporter":
            found = self.keys.get("orchestrator") or self.keys.get("agent") or self.fallback
        else:
            found = self.keys.get(role) or self.fallback
        if found:
            return found
        if role == "any":
            raise ToolError("no loopctl key configured: set LOOPCTL_API_KEY (or a role key)")
        if role == "reporter":
            raise ToolError("missing_key: reporting needs an orchestrator or agent key; set "
                            "LOOPCTL_ORCH_KEY or LOOPCTL_AGENT_KEY (or LOOPCTL_API_KEY)")
        var = ENV_FOR_ROLE[role]
        raise ToolError(
            f"missing_key: this tool needs an {role} key; set {var} (or LOOPCTL_API_KEY)"
        )


class LoopctlApi:
    """Calls the loopctl HTTP API and turns its error envelope into tool errors."""

    def __init__(self, server: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.server = server.rstrip("/")
        self._transport = transport

    async def call(
        self,
        keys: KeyRing,
        role: KeyRole,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        resp = await self._request(keys, role, method, path, json=json, params=params)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "data" in body:
            return body["data"] if "meta" not in body else body
        return body

    async def fetch_bytes(self, keys: KeyRing, role: KeyRole, path: str,
                          params: Mapping[str, Any] | None = None) -> bytes:
        return (await self._request(keys, role, "GET", path, params=params)).content

    async def _request(self, keys: KeyRing, role: KeyRole, method: str, path: str, *,
                       json: Any = None, params: Mapping[str, Any] | None = None
                       ) -> httpx.Response:
        key = keys.key_for(role)
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        async with httpx.AsyncClient(base_url=self.server, timeout=30,
                                     transport=self._transport) as http:
            try:
                resp = await http.request(method, path, json=json, params=clean,
                                          headers={"Authorization": f"Bearer {key}"})
            except httpx.HTTPError as exc:
                raise ToolError(f"unreachable: cannot reach loopctl at {self.server}: {exc}"
                                ) from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            error = body.get("error", body) if isinstance(body, dict) else None
            if isinstance(error, dict):
                code = error.get("code") or f"http_{resp.status_code}"
                message = error.get("message") or resp.reason_phrase
                hint = f" (hint: {error['hint']})" if error.get("hint") else ""
                raise ToolError(f"{code}: {message}{hint}")
            raise ToolError(f"http_{resp.status_code}: {resp.text[:200]}")
        return resp
