"""The knowledge routes over real HTTP (`loopctl serve`): envelopes, 4xx with nothing
written, another tenant's id -> 404, bulk publish, search, and the vault ZIP download."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import psycopg
from gateway_helpers import Client, error_code, serve

from loopctl.testing import create_tenant


def test_knowledge_routes_over_http(db: psycopg.Connection[Any], fresh_db: str) -> None:
    t, other = create_tenant(db), create_tenant(db)
    with serve(fresh_db) as server:
        me, them = Client(server.base_url, t.user_key), Client(server.base_url, other.user_key)
        r = me.post("/api/v1/knowledge/articles", {
            "title": "Reuse database connections", "body": "Keep a **pool** of connections.",
            "category": "pattern", "tags": ["postgres"]})
        assert r.status_code == 201, r.text
        art = r.json()["data"]["article"]
        for bad, status, code in (
                ({"title": "x", "body": "b", "category": "gossip"}, 422, "unknown_category"),
                ({"title": "x", "body": "b" * 100001, "category": "pattern"}, 413,
                 "body_too_large"),
                ({"title": "", "body": "b", "category": "pattern"}, 422, "invalid_title")):
            r = me.post("/api/v1/knowledge/articles", bad)
            assert (r.status_code, error_code(r)) == (status, code)
        r = them.get(f"/api/v1/knowledge/articles/{art['id']}")
        assert (r.status_code, error_code(r)) == (404, "article_not_found")
        assert them.post(f"/api/v1/knowledge/articles/{art['id']}/publish").status_code == 404
        r = me.post("/api/v1/knowledge/articles/bulk/publish", {"ids": [art["id"]]})
        assert r.status_code == 200 and r.json()["data"]["published"] == 1, r.text
        r = me.get("/api/v1/knowledge/search", params={"q": "connection pool",
                                                       "mode": "keyword"})
        assert r.status_code == 200, r.text
        assert [a["id"] for a in r.json()["data"]] == [art["id"]]
        assert them.get("/api/v1/knowledge/search", params={"q": "connection pool",
                                                            "mode": "keyword"}).json()["data"] == []
        r = me.get("/api/v1/knowledge/search", params={"q": " "})
        assert (r.status_code, error_code(r)) == (422, "empty_query")
        r = me.get("/api/v1/knowledge/export")
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        vault = zipfile.ZipFile(io.BytesIO(r.content))
        assert sorted(vault.namelist()) == ["_index.md", "pattern/reuse-database-connections.md"]
        assert Client(server.base_url).get("/api/v1/knowledge/export").status_code == 401
        assert them.get("/api/v1/knowledge/export").status_code == 200
        empty = zipfile.ZipFile(io.BytesIO(them.get("/api/v1/knowledge/export").content))
        assert empty.namelist() == ["_index.md"]
    assert db.execute("select count(*) from app.articles").fetchone() == (1,)
