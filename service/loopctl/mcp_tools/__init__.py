"""MCP server for loopctl (SPEC §11): `loopctl mcp` over stdio, and /mcp over HTTP."""
