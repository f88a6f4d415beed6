"""`loopctl mcp`: the MCP server over stdio, talking to a loopctl server over HTTP."""

from __future__ import annotations

import os

import anyio

from loopctl.mcp_tools.client import KeyRing, LoopctlApi
from loopctl.mcp_tools.server import build_server


def run_stdio() -> int:
    server = os.environ.get("LOOPCTL_SERVER", "http://127.0.0.1:8000")
    mcp = build_server(LoopctlApi(server), KeyRing.from_env())
    anyio.run(mcp.run_stdio_async)
    return 0
