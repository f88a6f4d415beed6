"""The knowledge-wiki MCP tools (SPEC §11), each a typed call of a /api/v1/knowledge route.

Lists carry at most 20 items and no article bodies; knowledge_get is the one tool that
returns a body (capped), because reading an article is its purpose.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from loopctl.mcp_tools.shaping import LIST_CAP, unwrap

if TYPE_CHECKING:
    from loopctl.mcp_tools.server import Calls

BODY_CAP = 20000

ArticleId = Annotated[UUID, Field(description="the article's id (UUID)")]
Category = Literal["pattern", "convention", "decision", "finding", "reference"]
Days = Annotated[int, Field(ge=1, le=3650, description="look-back window in days")]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]],
                 Field(max_length=20)]


class ArticleBrief(BaseModel):
    id: str
    title: str | None = None
    slug: str | None = None
    category: str | None = None
    status: str | None = None
    tags: list[str] = []
    score: float | None = None
    snippet: str | None = None


class ArticleList(BaseModel):
    articles: list[ArticleBrief]
    has_more: bool = False
    fallback: str | None = None


class Article(BaseModel):
    article: dict[str, Any]


class Rows(BaseModel):
    items: list[dict[str, Any]]
    has_more: bool = False


class IngestItem(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=100000)]
    title: Annotated[str | None, Field(max_length=300)] = None
    category: Category | None = None


class Report(BaseModel):
    data: dict[str, Any]


def _brief(row: dict[str, Any]) -> ArticleBrief:
    art = row.get("article") if isinstance(row.get("article"), dict) else row
    snippet = row.get("snippet") or row.get("headline")
    score = row.get("score", row.get("rank"))
    return ArticleBrief(
        id=str(art.get("id")), title=art.get("title"), slug=art.get("slug"),
        category=art.get("category"), status=art.get("status"),
        tags=[str(t) for t in (art.get("tags") or [])][:10],
        score=float(score) if isinstance(score, int | float) else None,
        snippet=str(snippet)[:300] if snippet else None)


def _article_list(payload: Any) -> ArticleList:
    rows, meta = unwrap(payload)
    return ArticleList(articles=[_brief(r) for r in rows[:LIST_CAP]],
                       has_more=bool(meta.get("has_more")) or len(rows) > LIST_CAP,
                       fallback=meta.get("fallback"))


def _rows(payload: Any) -> Rows:
    rows, meta = unwrap(payload)
    short = [{k: (v[:200] if isinstance(v, str) else v) for k, v in r.items()
              if k not in ("body", "embedding")} for r in rows[:LIST_CAP]]
    return Rows(items=short, has_more=bool(meta.get("has_more")) or len(rows) > LIST_CAP)


def _report(payload: Any) -> Report:
    return Report(data=payload if isinstance(payload, dict) else {"result": payload})


def register_knowledge_tools(mcp: MCPServer, calls: Calls) -> None:  # noqa: C901 - a list
    base = "/api/v1/knowledge"

    def art(article_id: UUID, suffix: str = "") -> str:
        return f"{base}/articles/{article_id}{suffix}"

    @mcp.tool(description="Short list of published articles (at most 20).")
    async def knowledge_index(ctx: Context, project_id: UUID | None = None,
                              category: Category | None = None) -> ArticleList:
        return _article_list(await calls.call(ctx, "any", "GET", f"{base}/index", params={
            "project_id": str(project_id) if project_id else None, "category": category,
            "limit": LIST_CAP}))

    @mcp.tool(description="Search articles: keyword, semantic or combined (default). Falls "
                          "back to keyword (fallback='keyword') without embeddings.")
    async def knowledge_search(
        ctx: Context, query: Annotated[str, Field(min_length=1, max_length=1000)],
        mode: Literal["keyword", "semantic", "combined"] = "combined",
        project_id: UUID | None = None, category: Category | None = None,
        limit: Annotated[int, Field(ge=1, le=LIST_CAP)] = 10,
    ) -> ArticleList:
        return _article_list(await calls.call(ctx, "any", "GET", f"{base}/search", params={
            "q": query, "mode": mode, "project_id": str(project_id) if project_id else None,
            "category": category, "limit": limit}))

    @mcp.tool(description="Read one article (the read is logged for usage analytics).")
    async def knowledge_get(ctx: Context, article_id: ArticleId) -> Article:
        data = await calls.call(ctx, "any", "GET", art(article_id))
        article = dict(data.get("article", data)) if isinstance(data, dict) else {}
        if isinstance(article.get("body"), str) and len(article["body"]) > BODY_CAP:
            article["body"] = article["body"][:BODY_CAP] + "\n…(truncated)"
        article.pop("embedding", None)
        return Article(article=article)

    @mcp.tool(description="Articles relevant to a story you are about to work on "
                          "(relevance mixed with recency, linked articles included).")
    async def knowledge_context(ctx: Context, story_id: UUID,
                                limit: Annotated[int, Field(ge=1, le=LIST_CAP)] = 10
                                ) -> ArticleList:
        return _article_list(await calls.call(ctx, "any", "GET", f"{base}/context",
                                              params={"story_id": str(story_id),
                                                      "limit": limit}))

    @mcp.tool(description="Create a draft article.")
    async def knowledge_create(
        ctx: Context, title: Annotated[str, Field(min_length=1, max_length=300)],
        body: Annotated[str, Field(min_length=1, max_length=100000)],
        category: Category, tags: Tags | None = None, project_id: UUID | None = None,
    ) -> ArticleBrief:
        data = await calls.call(ctx, "any", "POST", f"{base}/articles", json={
            "title": title, "body": body, "category": category, "tags": tags or [],
            "project_id": str(project_id) if project_id else None})
        return _brief(data)

    @mcp.tool(description="Publish a draft: it gets embedded and auto-linked "
                          "(orchestrator or user key).")
    async def knowledge_publish(ctx: Context, article_id: ArticleId) -> ArticleBrief:
        return _brief(await calls.call(ctx, "orchestrator", "POST", art(article_id, "/publish")))

    @mcp.tool(description="Publish up to 50 drafts; per-article results.")
    async def knowledge_bulk_publish(
        ctx: Context, article_ids: Annotated[list[UUID], Field(min_length=1, max_length=50)],
    ) -> Rows:
        return _rows(await calls.call(ctx, "orchestrator", "POST",
                                      f"{base}/articles/bulk/publish",
                                      json={"ids": [str(i) for i in article_ids]}))

    @mcp.tool(description="Return a published article to draft (orchestrator or user key).")
    async def knowledge_unpublish(ctx: Context, article_id: ArticleId) -> ArticleBrief:
        return _brief(await calls.call(ctx, "orchestrator", "POST",
                                       art(article_id, "/unpublish")))

    @mcp.tool(description="Archive an article (orchestrator or user key).")
    async def knowledge_archive(ctx: Context, article_id: ArticleId) -> ArticleBrief:
        return _brief(await calls.call(ctx, "orchestrator", "POST", art(article_id, "/archive")))

    @mcp.tool(description="Delete an article (user key).")
    async def knowledge_delete(ctx: Context, article_id: ArticleId) -> Report:
        return _report(await calls.call(ctx, "user", "DELETE", art(article_id)))

    @mcp.tool(description="Draft articles awaiting review (at most 20).")
    async def knowledge_drafts(ctx: Context, project_id: UUID | None = None,
                               offset: Annotated[int, Field(ge=0, le=100000)] = 0
                               ) -> ArticleList:
        return _article_list(await calls.call(ctx, "any", "GET", f"{base}/drafts", params={
            "project_id": str(project_id) if project_id else None, "limit": LIST_CAP,
            "offset": offset}))

    @mcp.tool(description="Health lint: stale, orphaned, contradiction clusters, coverage "
                          "gaps, broken sources (counts and a few examples).")
    async def knowledge_lint(ctx: Context,
                             stale_days: Annotated[int, Field(ge=1, le=3650)] = 90) -> Report:
        return _report(await calls.call(ctx, "orchestrator", "GET", f"{base}/lint",
                                        params={"stale_days": stale_days, "cap": 5}))

    @mcp.tool(description="Export published articles as an Obsidian vault ZIP. Over stdio, "
                          "`path` saves the ZIP on this machine; the file list is returned.")
    async def knowledge_export(
        ctx: Context, project_id: UUID | None = None,
        path: Annotated[str | None, Field(max_length=4096)] = None,
    ) -> Report:
        blob = await calls.raw(ctx, "any", f"{base}/export",
                               params={"project_id": str(project_id) if project_id else None})
        try:
            names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
        except zipfile.BadZipFile:
            raise ToolError("export_failed: the server did not return a ZIP") from None
        saved = None
        if path:
            if ctx.headers is not None:  # over HTTP the tool runs on the server: never write
                raise ToolError("path_not_allowed: saving a file works over stdio only")
            target = Path(path).expanduser()
            target.write_bytes(blob)
            saved = str(target)
        return Report(data={"files": len(names), "bytes": len(blob), "saved_to": saved,
                            "first_files": sorted(names)[:LIST_CAP]})

    @mcp.tool(description="Queue pasted text for extraction into draft articles.")
    async def knowledge_ingest(
        ctx: Context, text: Annotated[str, Field(min_length=1, max_length=100000)],
        title: Annotated[str | None, Field(max_length=300)] = None,
        category: Category | None = None, project_id: UUID | None = None,
    ) -> Report:
        item = {k: v for k, v in {"text": text, "title": title, "category": category}.items()
                if v is not None}
        return _report(await calls.call(ctx, "any", "POST", f"{base}/ingest", json={
            "items": [item], "project_id": str(project_id) if project_id else None}))

    @mcp.tool(description="Queue up to 50 pasted texts for extraction.")
    async def knowledge_ingest_batch(
        ctx: Context, items: Annotated[list[IngestItem], Field(min_length=1, max_length=50)],
        project_id: UUID | None = None,
    ) -> Report:
        return _report(await calls.call(ctx, "any", "POST", f"{base}/ingest", json={
            "items": [i.model_dump(exclude_none=True) for i in items],
            "project_id": str(project_id) if project_id else None}))

    @mcp.tool(description="Extraction, ingest and embedding jobs (at most 20).")
    async def knowledge_ingestion_jobs(
        ctx: Context, status: Literal["pending", "running", "done", "failed", "dead"]
        | None = None,
    ) -> Rows:
        return _rows(await calls.call(ctx, "any", "GET", f"{base}/ingestion-jobs",
                                      params={"status": status, "limit": LIST_CAP}))

    @mcp.tool(description="Most read articles in a window (at most 20).")
    async def knowledge_analytics_top(ctx: Context, days: Days = 30) -> Rows:
        return _rows(await calls.call(ctx, "any", "GET", f"{base}/analytics/top",
                                      params={"days": days, "limit": LIST_CAP}))

    @mcp.tool(description="Reads of one article.")
    async def knowledge_article_stats(ctx: Context, article_id: ArticleId) -> Report:
        return _report(await calls.call(ctx, "any", "GET", art(article_id, "/stats")))

    @mcp.tool(description="Reads per agent (at most 20; orchestrator or user key).")
    async def knowledge_agent_usage(ctx: Context, days: Days = 30) -> Rows:
        return _rows(await calls.call(ctx, "orchestrator", "GET", f"{base}/analytics/agents",
                                      params={"days": days}))

    @mcp.tool(description="Published articles nobody read in the window (at most 20).")
    async def knowledge_unused_articles(ctx: Context, days: Days = 30) -> Rows:
        return _rows(await calls.call(ctx, "any", "GET", f"{base}/analytics/unused",
                                      params={"days": days, "limit": LIST_CAP}))
