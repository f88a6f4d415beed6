"""Small HTTP helpers shared by both surfaces."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from loopctl.gateway.errors import HttpError

# Request headers forwarded to SQL as request.headers (lower-cased, as PostgREST does);
# the credential itself is never forwarded.
_HIDDEN_HEADERS = {"authorization", "cookie"}


def forwarded_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k not in _HIDDEN_HEADERS}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  *, raw: str | None = None) -> Response:
    content = raw if raw is not None else json.dumps(body, separators=(",", ":"))
    return Response(content, status_code=status, headers=headers,
                    media_type="application/json")


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, "invalid_json", f"the request body is not valid JSON: {exc}",
                        pgrst_code="PGRST102") from None
