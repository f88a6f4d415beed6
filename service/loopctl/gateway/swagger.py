"""Swagger UI at /swaggerui and /docs, its assets served from the swagger-ui-bundle package
(no CDN, no online validator: the page makes no request off this server)."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loopctl API</title>
<link rel="stylesheet" href="/swaggerui/assets/swagger-ui.css">
<link rel="icon" href="/swaggerui/assets/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/swaggerui/assets/swagger-ui-bundle.js"></script>
<script src="/swaggerui/init.js"></script></body></html>
"""
INIT_JS = """window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  validatorUrl: null, docExpansion: "list", tryItOutEnabled: false
});
"""


def assets_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


async def page(_request: object) -> Response:
    return HTMLResponse(PAGE)


async def init_js(_request: object) -> Response:
    return Response(INIT_JS, media_type="text/javascript")


def routes() -> list[BaseRoute]:
    return [
        Route("/swaggerui", page, methods=["GET"], include_in_schema=False),
        Route("/docs", page, methods=["GET"], include_in_schema=False),
        Route("/swaggerui/init.js", init_js, methods=["GET"], include_in_schema=False),
        Mount("/swaggerui/assets", StaticFiles(directory=assets_dir()), name="swaggerui"),
    ]
