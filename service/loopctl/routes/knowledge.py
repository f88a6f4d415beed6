"""Knowledge wiki (SPEC §9): functions/knowledge.sql. The vault ZIP export is a plain route
in loopctl/knowledge/http.py (it answers application/zip, not JSON)."""

from __future__ import annotations

from loopctl.gateway.declare import INTEGER, STRING, UUID, Route, body, path, query, route

ARTICLE = {"id": "7a1e0000-0000-4000-8000-000000000001", "project_id": None,
           "title": "Lock rows in a consistent order", "slug": "lock-rows-in-a-consistent-order",
           "category": "convention", "tags": ["postgres", "locking"], "status": "draft",
           "source": "review", "source_ref": "5b0e0000-0000-4000-8000-000000000009",
           "embedding_model": None, "embedded": False, "published_at": None,
           "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:00Z",
           "body": "Sort by primary key before locking."}
CATEGORY = {"type": "string", "enum": ["pattern", "convention", "decision", "finding",
                                       "reference"]}
TAGS = {"type": "array", "items": {"type": "string"}, "maxItems": 20}
MODE = {"type": "string", "enum": ["keyword", "semantic", "combined"]}
ROLES_ALL = ("user", "orchestrator", "agent")
ROLES_EDIT = ("user", "orchestrator")
T = "knowledge"


def _id_route(method: str, suffix: str, fn: str, summary: str,
              roles: tuple[str, ...] = ROLES_EDIT) -> Route:
    return route(method, f"/api/v1/knowledge/articles/{{id}}{suffix}", fn, tag=T,
                 args={"p_id": path("id")}, roles=roles, summary=summary,
                 data_example={"article": ARTICLE})


ROUTES = [
    route("POST", "/api/v1/knowledge/articles", "api.knowledge_create", tag=T, status=201,
          args={"p_title": body("title", STRING, required=True),
                "p_body": body("body", STRING, required=True,
                               description="Markdown, at most 100000 characters"),
                "p_category": body("category", CATEGORY, required=True),
                "p_tags": body("tags", TAGS), "p_project_id": body("project_id", UUID)},
          roles=ROLES_ALL, summary="Create a draft article",
          request_example={"title": ARTICLE["title"], "body": ARTICLE["body"],
                           "category": "convention", "tags": ["postgres"]},
          data_example={"article": ARTICLE}),
    _id_route("GET", "", "api.knowledge_get", "Read an article (logged)", ROLES_ALL),
    route("PATCH", "/api/v1/knowledge/articles/{id}", "api.knowledge_update", tag=T,
          args={"p_id": path("id"), "p_title": body("title"), "p_body": body("body"),
                "p_category": body("category", CATEGORY), "p_tags": body("tags", TAGS)},
          roles=ROLES_ALL, summary="Edit an article (agents: drafts only)",
          request_example={"body": "Sort by primary key."}, data_example={"article": ARTICLE}),
    _id_route("DELETE", "", "api.knowledge_delete", "Delete an article", ("user",)),
    _id_route("POST", "/publish", "api.knowledge_publish",
              "Publish a draft (queues its embedding, then auto-links)"),
    _id_route("POST", "/unpublish", "api.knowledge_unpublish", "Back to draft"),
    _id_route("POST", "/archive", "api.knowledge_archive", "Archive an article"),
    _id_route("GET", "/links", "api.knowledge_links", "Links of an article", ROLES_ALL),
    _id_route("GET", "/stats", "api.knowledge_article_stats", "Reads of an article", ROLES_ALL),
    route("POST", "/api/v1/knowledge/articles/{id}/links", "api.knowledge_link", tag=T,
          status=201, args={"p_from_id": path("id"), "p_to_id": body("to_id", UUID, required=True),
                            "p_link_type": body("link_type", {"type": "string", "enum": [
                                "relates_to", "derived_from", "contradicts", "supersedes"]})},
          roles=ROLES_ALL, summary="Link two articles"),
    route("POST", "/api/v1/knowledge/articles/{id}/supersede", "api.knowledge_supersede", tag=T,
          args={"p_old_id": path("id"), "p_new_id": body("by", UUID, required=True)},
          roles=ROLES_EDIT, summary="Mark an article superseded by another"),
    route("POST", "/api/v1/knowledge/articles/bulk/publish", "api.knowledge_bulk_publish", tag=T,
          args={"p_ids": body("ids", {"type": "array", "items": UUID, "maxItems": 50},
                              required=True)},
          roles=ROLES_EDIT, summary="Publish up to 50 drafts (per-item results)"),
    route("GET", "/api/v1/knowledge/drafts", "api.knowledge_drafts", tag=T, envelope="list",
          args={"p_project_id": query("project_id", UUID), "p_limit": query("limit", INTEGER),
                "p_offset": query("offset", INTEGER)},
          roles=ROLES_ALL, summary="Draft articles awaiting review"),
    route("GET", "/api/v1/knowledge/index", "api.knowledge_index", tag=T, envelope="list",
          args={"p_project_id": query("project_id", UUID),
                "p_category": query("category", CATEGORY), "p_limit": query("limit", INTEGER)},
          roles=ROLES_ALL, summary="Short list of published articles"),
    route("GET", "/api/v1/knowledge/search", "api.knowledge_search", tag=T, envelope="list",
          args={"p_query": query("q", required=True), "p_mode": query("mode", MODE),
                "p_project_id": query("project_id", UUID),
                "p_category": query("category", CATEGORY), "p_limit": query("limit", INTEGER)},
          roles=ROLES_ALL, summary="Keyword, semantic or combined (RRF) search",
          description="Falls back to keyword with \"fallback\": \"keyword\" when no query "
                      "embedding is available."),
    route("GET", "/api/v1/knowledge/context", "api.knowledge_context", tag=T, envelope="list",
          args={"p_story_id": query("story_id", UUID, required=True),
                "p_limit": query("limit", INTEGER)},
          roles=ROLES_ALL, summary="Articles for a story: relevance mixed with recency"),
    route("GET", "/api/v1/knowledge/lint", "api.knowledge_lint", tag=T,
          args={"p_stale_days": query("stale_days", INTEGER), "p_cap": query("cap", INTEGER)},
          roles=ROLES_EDIT, summary="Health lint: stale, orphaned, contradictions, gaps"),
    route("POST", "/api/v1/knowledge/ingest", "api.knowledge_ingest", tag=T, status=202,
          args={"p_items": body("items", {"type": "array", "maxItems": 50}, required=True),
                "p_project_id": body("project_id", UUID)},
          roles=ROLES_ALL, summary="Queue pasted text (≤50 items) for extraction"),
    route("GET", "/api/v1/knowledge/ingestion-jobs", "api.knowledge_ingestion_jobs", tag=T,
          envelope="list", args={"p_kind": query("kind"), "p_status": query("status"),
                                 "p_limit": query("limit", INTEGER)},
          roles=ROLES_ALL, summary="Extraction / ingest / embedding jobs"),
    route("GET", "/api/v1/knowledge/pipeline", "api.knowledge_pipeline", tag=T,
          roles=ROLES_ALL, summary="Job counts, article counts, embedding coverage"),
    route("GET", "/api/v1/knowledge/analytics/top", "api.knowledge_analytics_top", tag=T,
          envelope="list", args={"p_days": query("days", INTEGER),
                                 "p_limit": query("limit", INTEGER)},
          roles=ROLES_ALL, summary="Most read articles"),
    route("GET", "/api/v1/knowledge/analytics/unused", "api.knowledge_unused_articles", tag=T,
          envelope="list", args={"p_days": query("days", INTEGER),
                                 "p_limit": query("limit", INTEGER)},
          roles=ROLES_ALL, summary="Published articles nobody read"),
    route("GET", "/api/v1/knowledge/analytics/agents", "api.knowledge_agent_usage", tag=T,
          envelope="list", args={"p_days": query("days", INTEGER)},
          roles=ROLES_EDIT, summary="Reads per agent"),
    route("GET", "/api/v1/knowledge/analytics/projects", "api.knowledge_project_usage", tag=T,
          envelope="list", args={"p_days": query("days", INTEGER)},
          roles=ROLES_EDIT, summary="Articles and reads per project"),
]
