"""GET /health: database reachability, server version, extensions, deployed migration."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row

from loopctl import __version__

router = APIRouter()

HEALTH_SQL = """
select current_setting('server_version') as server_version,
       (select jsonb_object_agg(extname, extversion order by extname) from pg_extension)
         as extensions,
       to_regclass('sqitch.changes') is not null as has_registry
"""

# The newest deployed change and the newest tag at or before it.
MIGRATION_SQL = """
select c.change, c.committed_at,
       (select t.tag from sqitch.tags t where t.project = c.project
         order by t.committed_at desc limit 1) as tag
  from sqitch.changes c where c.project = 'loopctl'
 order by c.committed_at desc limit 1
"""


def read_health(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(HEALTH_SQL).fetchone() or {}
        migration = None
        if row.get("has_registry"):
            m = cur.execute(MIGRATION_SQL).fetchone()
            if m:
                migration = {"change": m["change"], "tag": m["tag"],
                             "deployed_at": m["committed_at"].isoformat()}
    return {
        "server_version": row.get("server_version"),
        "extensions": row.get("extensions") or {},
        "migration": migration,
    }


def embeddings_status(request: Request) -> str:
    """'loaded' / 'not_loaded' for the model this process serves, else 'external'."""
    settings = request.app.state.settings
    if settings.embeddings_url or not settings.embeddings_serve:
        return "external"
    from loopctl.knowledge.embeddings import LocalEmbedder

    return "loaded" if LocalEmbedder.loaded() else "not_loaded"


@router.get("/health", tags=["discovery"], summary="Service and database health")
def health(request: Request) -> JSONResponse:
    body: dict[str, Any] = {"status": "ok", "version": __version__,
                            "embeddings": embeddings_status(request)}
    try:
        with request.app.state.pool.connection(timeout=5) as conn:
            body |= {"database": "ok"} | read_health(conn)
    except Exception as exc:  # any failure to reach the database is reported, not raised
        first = str(exc).strip().splitlines()
        body |= {"status": "degraded", "database": "unreachable",
                 "error": first[0] if first else type(exc).__name__}
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
