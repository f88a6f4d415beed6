"""Shared by the gateway/HTTP tests: a real `loopctl serve` against a cloned database."""

from __future__ import annotations

from typing import Any

import httpx

from loopctl.testing import Key, ServerProcess


def serve(db_url: str, **env: str) -> ServerProcess:
    return ServerProcess({"LOOPCTL_DATABASE_URL": db_url, **env}, "--no-migrate")


class Client:
    """httpx against the server, acting as one key."""

    def __init__(self, base_url: str, key: Key | str | None = None) -> None:
        raw = key.raw if isinstance(key, Key) else key
        headers = {"Authorization": f"Bearer {raw}"} if raw else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)

    def call(self, method: str, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, json=json, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=json, **kw)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])
