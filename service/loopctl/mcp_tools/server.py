"""loopctl's MCP server: typed tools for agents, over stdio and streamable HTTP (SPEC §11).

Every tool is a thin, typed call of one /api/v1 route; the rules live in the database.
Inputs are validated by their schemas (enums, bounds, UUIDs) before any HTTP call; lists
are trimmed to 20 short items so an agent's context stays small.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from loopctl import __version__
from loopctl.mcp_tools.client import KeyRing, KeyRole, LoopctlApi
from loopctl.mcp_tools.knowledge import register_knowledge_tools
from loopctl.mcp_tools.shaping import LIST_CAP, first_page, short, unwrap

StoryId = Annotated[UUID, Field(description="the story's id (UUID)")]
ProjectId = Annotated[UUID, Field(description="the project's id (UUID)")]
Summary = Annotated[str | None, Field(default=None, max_length=5000,
                                      description="short summary for the record")]


class StoryBrief(BaseModel):
    id: str
    number: str | None = None
    title: str | None = None
    agent_status: str | None = None
    verified_status: str | None = None
    assigned_agent_id: str | None = None
    epic_id: str | None = None


class Transition(BaseModel):
    story: StoryBrief
    next_actions: list[str]


class StoryList(BaseModel):
    stories: list[StoryBrief]
    total: int | None = None
    has_more: bool = False


class ProjectBrief(BaseModel):
    id: str
    name: str
    slug: str
    status: str | None = None


class ProjectList(BaseModel):
    projects: list[ProjectBrief]
    has_more: bool = False


class Result(BaseModel):
    """A JSON object returned by the API (shape documented in the OpenAPI document)."""

    data: dict[str, Any]


class ItemList(BaseModel):
    items: list[dict[str, Any]]
    has_more: bool = False


class BulkResult(BaseModel):
    succeeded: int
    failed: int
    results: list[dict[str, Any]]


def _brief(story: dict[str, Any]) -> StoryBrief:
    return StoryBrief(**{k: (str(v) if v is not None else None)
                         for k, v in story.items() if k in StoryBrief.model_fields})


SYSTEM_ARTICLES = {
    "chain-of-custody": (
        "Chain of custody: contract (commit to the title and criteria count) -> claim (agent; "
        "dependencies verified) -> start -> request-review -> report (by someone else: "
        "self_report_blocked) -> review-complete (orchestrator, not the implementer) -> "
        "verify (orchestrator with an agent identity, not the implementer; needs a review "
        "after the report). Reject sends a story back (auto-reset to pending by default)."),
    "identity-gates": (
        "Three gates compare the caller with the implementer: same agent, or same dispatch "
        "lineage root, is the same actor. A second key for the same agent or a dispatched "
        "sub-agent cannot report, review or verify the implementer's work. Attempts are "
        "recorded as custody violations and emitted as events."),
    "cost-reporting": (
        "Report token usage with report_token_usage for the story you work on; the agent "
        "comes from your key. Blocking budgets refuse further claims and reports with 402."),
}


class Calls:
    """Tool-side access to the API: the key for this request, then one HTTP call."""

    def __init__(self, api: LoopctlApi, env_keys: KeyRing) -> None:
        self.api = api
        self.env_keys = env_keys

    def keys(self, ctx: Context | None) -> KeyRing:
        headers = ctx.headers if ctx is not None else None
        auth = (headers or {}).get("authorization", "")
        if auth.lower().startswith("bearer "):
            return KeyRing(bearer=auth[7:].strip())
        return self.env_keys

    async def call(self, ctx: Context | None, role: KeyRole, method: str, path: str,
                   json: Any = None, params: dict[str, Any] | None = None) -> Any:
        return await self.api.call(self.keys(ctx), role, method, path, json=json,
                                   params=params)

    async def raw(self, ctx: Context | None, role: KeyRole, path: str,
                  params: dict[str, Any] | None = None) -> bytes:
        return await self.api.fetch_bytes(self.keys(ctx), role, path, params=params)


def build_server(api: LoopctlApi, env_keys: KeyRing) -> MCPServer:
    """All tools of SPEC §11 except the knowledge ones (they come with the wiki)."""
    mcp = MCPServer(
        "loopctl", version=__version__,
        instructions="Drive loopctl stories through their chain of custody. Each tool uses "
                     "the key its role needs (agent, orchestrator or user).")

    calls = Calls(api, env_keys)
    call = calls.call

    async def transition(ctx: Context, role: KeyRole, story_id: UUID, action: str,
                         body: dict[str, Any] | None = None) -> Transition:
        data = await call(ctx, role, "POST", f"/api/v1/stories/{story_id}/{action}",
                          json={k: v for k, v in (body or {}).items() if v is not None})
        return Transition(story=_brief(data["story"]), next_actions=data.get("next_actions", []))

    # -- tenant / projects / stories --------------------------------------------------------
    @mcp.tool(description="The tenant of the configured key, with its settings.")
    async def get_tenant(ctx: Context) -> Result:
        return Result(data=await call(ctx, "any", "GET", "/api/v1/tenant"))

    @mcp.tool(description="Projects of the tenant (at most 20).")
    async def list_projects(ctx: Context) -> ProjectList:
        rows, more = first_page(await call(ctx, "any", "GET", "/api/v1/projects"))
        return ProjectList(projects=[ProjectBrief(**{k: str(r[k]) if r.get(k) is not None
                                                     else None for k in ProjectBrief.model_fields
                                                     if k in r}) for r in rows],
                           has_more=more)

    @mcp.tool(description="Create a project (orchestrator or user key).")
    async def create_project(
        ctx: Context,
        name: Annotated[str, Field(min_length=1, max_length=200)],
        slug: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")],
        repo_url: Annotated[str | None, Field(max_length=2000)] = None,
        description: Annotated[str | None, Field(max_length=20000)] = None,
    ) -> ProjectBrief:
        data = await call(ctx, "orchestrator", "POST", "/api/v1/projects",
                          json={"name": name, "slug": slug, "repo_url": repo_url,
                                "description": description})
        return ProjectBrief(id=str(data["id"]), name=data["name"], slug=data["slug"],
                            status=data.get("status"))

    @mcp.tool(description="Delete a project and everything in it (user key).")
    async def delete_project(ctx: Context, project_id: ProjectId) -> Result:
        data = await call(ctx, "user", "DELETE", f"/api/v1/projects/{project_id}")
        return Result(data=data if isinstance(data, dict) else {"deleted": str(project_id)})

    @mcp.tool(description="Progress of a project: counts by status, percent verified.")
    async def get_progress(ctx: Context, project_id: ProjectId) -> Result:
        return Result(data=await call(ctx, "any", "GET", f"/api/v1/projects/{project_id}/progress"))

    @mcp.tool(description="Import epics, stories and dependencies into a project "
                          "(SPEC import format; merge=true updates by number).")
    async def import_stories(
        ctx: Context, project_id: ProjectId,
        epics: Annotated[list[dict[str, Any]], Field(max_length=500)],
        story_dependencies: list[dict[str, str]] | None = None,
        epic_dependencies: list[dict[str, int | str]] | None = None,
        merge: bool = False,
    ) -> Result:
        payload = {"epics": epics, "story_dependencies": story_dependencies or [],
                   "epic_dependencies": epic_dependencies or []}
        return Result(data=await call(ctx, "orchestrator", "POST",
                                      f"/api/v1/projects/{project_id}/import", json=payload,
                                      params={"merge": "true" if merge else None}))

    @mcp.tool(description="Create one story in an epic.")
    async def create_story(
        ctx: Context, project_id: ProjectId,
        epic_id: Annotated[UUID, Field(description="the epic's id")],
        number: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")],
        title: Annotated[str, Field(min_length=1, max_length=500)],
        description: Annotated[str | None, Field(max_length=50000)] = None,
        acceptance_criteria: Annotated[list[str], Field(max_length=200)] | None = None,
        estimated_hours: Annotated[float | None, Field(ge=0, le=10000)] = None,
    ) -> StoryBrief:
        data = await call(ctx, "orchestrator", "POST", "/api/v1/stories", json={
            "project_id": str(project_id), "epic_id": str(epic_id), "number": number,
            "title": title, "description": description, "estimated_hours": estimated_hours,
            "acceptance_criteria": [{"criterion": c} for c in acceptance_criteria or []]})
        return _brief(data.get("story", data))

    @mcp.tool(description="Mark a never-started pending story done and verified, with the "
                          "reason on the record (orchestrator).")
    async def backfill_story(
        ctx: Context, story_id: StoryId,
        reason: Annotated[str, Field(min_length=1, max_length=5000)],
        evidence_url: Annotated[str | None, Field(max_length=2000)] = None,
    ) -> Transition:
        return await transition(ctx, "orchestrator", story_id, "backfill",
                                {"reason": reason, "evidence_url": evidence_url})

    @mcp.tool(description="Stories of a project, filtered by status (at most 20).")
    async def list_stories(
        ctx: Context, project_id: ProjectId,
        agent_status: Literal["pending", "contracted", "assigned", "implementing",
                              "reported_done"] | None = None,
        verified_status: Literal["unverified", "verified", "rejected"] | None = None,
        epic_id: UUID | None = None,
        offset: Annotated[int, Field(ge=0, le=100000)] = 0,
    ) -> StoryList:
        payload = await call(ctx, "any", "GET", "/api/v1/stories", params={
            "project_id": str(project_id), "agent_status": agent_status,
            "verified_status": verified_status, "epic_id": str(epic_id) if epic_id else None,
            "limit": LIST_CAP, "offset": offset})
        rows, more = first_page(payload)
        total = (payload.get("meta") or {}).get("total") if isinstance(payload, dict) else None
        return StoryList(stories=[_brief(r) for r in rows], total=total, has_more=more)

    @mcp.tool(description="Pending stories whose dependencies are all verified (at most 20).")
    async def list_ready_stories(ctx: Context, project_id: ProjectId) -> StoryList:
        rows, more = first_page(await call(ctx, "any", "GET", "/api/v1/stories/ready",
                                      params={"project_id": str(project_id)}))
        return StoryList(stories=[_brief(r) for r in rows], has_more=more)

    @mcp.tool(description="One story with its statuses.")
    async def get_story(ctx: Context, story_id: StoryId) -> StoryBrief:
        data = await call(ctx, "any", "GET", f"/api/v1/stories/{story_id}")
        return _brief(data.get("story", data))

    @mcp.tool(description="The acceptance criteria of a story (id, description, status).")
    async def get_acceptance_criteria(ctx: Context, story_id: StoryId) -> ItemList:
        data = await call(ctx, "any", "GET", f"/api/v1/stories/{story_id}")
        criteria = data.get("acceptance_criteria") or (data.get("story") or {}).get(
            "acceptance_criteria") or []
        return ItemList(items=[short(c, 500) for c in criteria[:200]])

    # -- implementer workflow ------------------------------------------------------------
    @mcp.tool(description="Commit to a story's whole scope: its exact title and the number "
                          "of acceptance criteria (agent key).")
    async def contract_story(
        ctx: Context, story_id: StoryId,
        story_title: Annotated[str, Field(min_length=1, max_length=500)],
        ac_count: Annotated[int, Field(ge=0, le=1000)],
    ) -> Transition:
        return await transition(ctx, "agent", story_id, "contract",
                                {"story_title": story_title, "ac_count": ac_count})

    @mcp.tool(description="Claim a contracted story (agent key; dependencies must be verified).")
    async def claim_story(ctx: Context, story_id: StoryId) -> Transition:
        return await transition(ctx, "agent", story_id, "claim")

    @mcp.tool(description="Start work on a story you claimed (agent key).")
    async def start_story(ctx: Context, story_id: StoryId) -> Transition:
        return await transition(ctx, "agent", story_id, "start")

    @mcp.tool(description="Ask for review of the story you implement (agent key).")
    async def request_review(ctx: Context, story_id: StoryId) -> Transition:
        return await transition(ctx, "agent", story_id, "request-review")

    # -- review and verification ------------------------------------------------------------
    @mcp.tool(description="Report a story done — by someone other than its implementer "
                          "(orchestrator key, else agent key).")
    async def report_story(
        ctx: Context, story_id: StoryId,
        artifact: dict[str, Any] | None = None,
        token_usage: dict[str, Any] | None = None,
    ) -> Transition:
        return await transition(ctx, "reporter", story_id, "report",
                                {"artifact": artifact, "token_usage": token_usage})

    @mcp.tool(description="Record an independent review of a reported story (orchestrator).")
    async def review_complete(
        ctx: Context, story_id: StoryId,
        review_type: Annotated[str, Field(min_length=1, max_length=100)],
        findings_count: Annotated[int, Field(ge=0, le=100000)] = 0,
        fixes_count: Annotated[int, Field(ge=0, le=100000)] = 0,
        disproved_count: Annotated[int, Field(ge=0, le=100000)] = 0,
        summary: Summary = None,
    ) -> Result:
        data = await call(ctx, "orchestrator", "POST",
                          f"/api/v1/stories/{story_id}/review-complete",
                          json={"review_type": review_type, "findings_count": findings_count,
                                "fixes_count": fixes_count, "disproved_count": disproved_count,
                                "summary": summary})
        return Result(data=data)

    @mcp.tool(description="Verify a reviewed story (orchestrator with an agent identity, "
                          "never the implementer).")
    async def verify_story(
        ctx: Context, story_id: StoryId, result: Literal["pass", "partial"],
        summary: Summary = None,
        review_type: Annotated[str | None, Field(max_length=100)] = None,
    ) -> Transition:
        return await transition(ctx, "orchestrator", story_id, "verify",
                                {"result": result, "summary": summary,
                                 "review_type": review_type})

    @mcp.tool(description="Reject a reported or verified story (orchestrator).")
    async def reject_story(
        ctx: Context, story_id: StoryId,
        reason: Annotated[str, Field(min_length=1, max_length=5000)],
    ) -> Transition:
        return await transition(ctx, "orchestrator", story_id, "reject", {"reason": reason})

    @mcp.tool(description="Verify every reported story of an epic; per-story results.")
    async def verify_all_in_epic(
        ctx: Context, epic_id: Annotated[UUID, Field(description="the epic's id")],
        summary: Summary = None,
        review_type: Annotated[str | None, Field(max_length=100)] = None,
    ) -> BulkResult:
        data = await call(ctx, "orchestrator", "POST", f"/api/v1/epics/{epic_id}/verify-all",
                          json={"summary": summary, "review_type": review_type})
        return BulkResult(succeeded=data.get("succeeded", 0), failed=data.get("failed", 0),
                          results=[short(r) for r in data.get("results", [])[:50]])

    # -- cost ---------------------------------------------------------------------------------
    @mcp.tool(description="Report tokens spent on a story (agent key; the agent comes from "
                          "the key).")
    async def report_token_usage(
        ctx: Context, story_id: StoryId,
        input_tokens: Annotated[int, Field(ge=0, le=1_000_000_000)],
        output_tokens: Annotated[int, Field(ge=0, le=1_000_000_000)],
        model_name: Annotated[str, Field(min_length=1, max_length=200)],
        cost_millicents: Annotated[int, Field(ge=0, le=10**12)] = 0,
        phase: Annotated[str | None, Field(max_length=100)] = None,
        session_id: Annotated[str | None, Field(max_length=200)] = None,
    ) -> Result:
        return Result(data=await call(ctx, "agent", "POST", "/api/v1/token-usage", json={
            "story_id": str(story_id), "input_tokens": input_tokens,
            "output_tokens": output_tokens, "model_name": model_name,
            "cost_millicents": cost_millicents, "phase": phase, "session_id": session_id}))

    @mcp.tool(description="Per-agent cost ranking: tokens, stories, tokens/story, model, "
                          "budget % (at most 20 agents).")
    async def get_cost_summary(ctx: Context) -> ItemList:
        rows, more = first_page(await call(ctx, "any", "GET", "/api/v1/analytics/agents"))
        return ItemList(items=[short(r) for r in rows], has_more=more)

    @mcp.tool(description="Token usage reports of one story (at most 20).")
    async def get_story_token_usage(ctx: Context, story_id: StoryId) -> ItemList:
        rows, more = first_page(await call(ctx, "any", "GET",
                                      f"/api/v1/stories/{story_id}/token-usage"))
        return ItemList(items=[short(r) for r in rows], has_more=more)

    @mcp.tool(description="Open cost anomalies (high_cost, suspiciously_low), at most 20.")
    async def get_cost_anomalies(ctx: Context) -> ItemList:
        rows, more = first_page(await call(ctx, "any", "GET", "/api/v1/cost/anomalies"))
        return ItemList(items=[short(r) for r in rows], has_more=more)

    @mcp.tool(description="Set a token budget for a project, epic, story or agent.")
    async def set_token_budget(
        ctx: Context, scope_type: Literal["project", "epic", "story", "agent"],
        scope_id: UUID,
        limit_millicents: Annotated[int | None, Field(ge=1, le=10**12)] = None,
        limit_tokens: Annotated[int | None, Field(ge=1, le=10**12)] = None,
        alert_threshold_pct: Annotated[int, Field(ge=1, le=100)] = 80,
        mode: Literal["warn", "block"] = "warn",
    ) -> Result:
        return Result(data=await call(ctx, "orchestrator", "POST", "/api/v1/budgets", json={
            "scope_type": scope_type, "scope_id": str(scope_id),
            "limit_millicents": limit_millicents, "limit_tokens": limit_tokens,
            "alert_threshold_pct": alert_threshold_pct, "mode": mode}))

    # -- custody and discovery ------------------------------------------------------------------
    @mcp.tool(description="The API's routes (method and path), at most 20 per page.")
    async def list_routes(
        ctx: Context, offset: Annotated[int, Field(ge=0, le=10000)] = 0,
    ) -> ItemList:
        payload = await call(ctx, "any", "GET", "/api/v1/routes")
        rows, _ = unwrap(payload)
        page = rows[offset:offset + LIST_CAP]
        return ItemList(items=[short(r) for r in page],
                        has_more=len(rows) > offset + LIST_CAP)

    @mcp.tool(description="Spawn a sub-agent: a short-lived key sharing your lineage "
                          "(orchestrator key bound to an agent).")
    async def dispatch(
        ctx: Context,
        agent_name: Annotated[str | None, Field(max_length=200)] = None,
        purpose: Annotated[str | None, Field(max_length=2000)] = None,
        story_id: UUID | None = None,
        ttl_seconds: Annotated[int, Field(ge=60, le=14400)] = 3600,
    ) -> Result:
        return Result(data=await call(ctx, "orchestrator", "POST", "/api/v1/dispatches", json={
            "agent_name": agent_name, "purpose": purpose,
            "story_id": str(story_id) if story_id else None, "ttl_seconds": ttl_seconds}))

    @mcp.tool(description="The custody chain of one story, oldest first (at most 20 steps "
                          "from `offset`).")
    async def get_story_history(
        ctx: Context, story_id: StoryId,
        offset: Annotated[int, Field(ge=0, le=100000)] = 0,
    ) -> ItemList:
        payload = await call(ctx, "any", "GET", f"/api/v1/stories/{story_id}/history")
        rows, _ = unwrap(payload)
        page = rows[offset:offset + LIST_CAP]
        return ItemList(items=[short(r) for r in page], has_more=len(rows) > offset + LIST_CAP)

    @mcp.tool(description="Changes after a cursor (or ISO time), oldest first, at most 20.")
    async def get_changes(
        ctx: Context,
        since: Annotated[str | None, Field(max_length=64,
                                           description="cursor or ISO-8601 time")] = None,
        project_id: UUID | None = None,
        entity_type: Annotated[str | None, Field(max_length=64)] = None,
        action: Annotated[str | None, Field(max_length=64)] = None,
    ) -> Result:
        payload = await call(ctx, "any", "GET", "/api/v1/changes", params={
            "since": since, "project_id": str(project_id) if project_id else None,
            "entity_type": entity_type, "action": action, "limit": LIST_CAP})
        body = payload if isinstance(payload, dict) else {"data": payload}
        return Result(data={"data": [short(r) for r in (body.get("data") or [])][:LIST_CAP],
                            "has_more": body.get("has_more", False),
                            "next_cursor": body.get("next_cursor")})

    @mcp.tool(description="Check the tenant's audit hash chain; names the first broken link.")
    async def verify_audit_chain(ctx: Context) -> Result:
        return Result(data=await call(ctx, "orchestrator", "GET", "/api/v1/audit/verify"))

    @mcp.tool(description="loopctl's own short articles on how the process works.")
    async def get_system_articles(
        ctx: Context,
        topic: Literal["chain-of-custody", "identity-gates", "cost-reporting"] | None = None,
    ) -> ItemList:
        chosen = [topic] if topic else list(SYSTEM_ARTICLES)
        return ItemList(items=[{"topic": t, "body": SYSTEM_ARTICLES[t]} for t in chosen])

    register_knowledge_tools(mcp, calls)
    return mcp
