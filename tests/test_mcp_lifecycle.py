"""Issue #7: a real MCP client session drives a story's whole lifecycle, stdio and HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from mcp.client.session import ClientSession
from mcp_sessions import http_session, stdio_session

from loopctl.testing import Key, ServerProcess, create_agent_key, create_tenant

IMPORT = {"epics": [{"number": 1, "title": "Launch", "stories": [
    {"number": "1.1", "title": "Landing page",
     "acceptance_criteria": [{"criterion": "renders"}, {"criterion": "links work"}]}]}]}


@pytest.fixture
def world(db: psycopg.Connection, fresh_db: str) -> Iterator[dict[str, Any]]:
    t = create_tenant(db)
    implementer = create_agent_key(db, t.id, "agent", "worker-1")
    orch = create_agent_key(db, t.id, "orchestrator", "orch-1")
    # The implementer's own second key, with orchestrator rights: still the same actor.
    twin = db.execute("select app.mint_key(%s, 'twin', 'orchestrator', %s)",
                      (t.id, implementer.agent_id)).fetchone()[0]
    twin_key = Key(twin["raw_key"], "orchestrator", t.id, twin["id"], implementer.agent_id)
    with ServerProcess({"LOOPCTL_DATABASE_URL": fresh_db}) as server:
        headers = {"Authorization": f"Bearer {t.user_key.raw}"}
        project = httpx.post(server.base_url + "/api/v1/projects", headers=headers,
                             json={"name": "Web", "slug": "web"}).json()["data"]
        imported = httpx.post(f"{server.base_url}/api/v1/projects/{project['id']}/import",
                              headers=headers, json=IMPORT)
        assert imported.status_code == 201, imported.text
        story_id = db.execute("select id::text from app.stories where tenant_id = %s",
                              (t.id,)).fetchone()[0]
        epic_id = db.execute("select id::text from app.epics where tenant_id = %s",
                             (t.id,)).fetchone()[0]
        yield {"server": server, "implementer": implementer, "orch": orch, "twin": twin_key,
               "story_id": story_id, "db": db, "user": t.user_key, "project_id": project["id"],
               "epic_id": epic_id}


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def drive_lifecycle(agent: ClientSession, orch: ClientSession, twin: ClientSession,
                          story_id: str) -> None:
    sid = {"story_id": story_id}
    got = structured(await agent.call_tool("contract_story", sid | {
        "story_title": "Landing page", "ac_count": 2}))
    assert got["story"]["agent_status"] == "contracted"
    for tool, status in (("claim_story", "assigned"), ("start_story", "implementing"),
                         ("request_review", "implementing")):
        got = structured(await agent.call_tool(tool, sid))
        assert got["story"]["agent_status"] == status, tool
    # The implementer cannot report its own work.
    refused = await agent.call_tool("report_story", sid)
    assert refused.is_error and "self_report_blocked" in refused.content[0].text
    assert structured(await orch.call_tool("report_story", sid))["story"][
        "agent_status"] == "reported_done"
    structured(await orch.call_tool("review_complete", sid | {
        "review_type": "code", "findings_count": 1, "fixes_count": 1, "summary": "ok"}))
    # The implementer's second key (orchestrator role) is refused at verify.
    refused = await twin.call_tool("verify_story", sid | {"result": "pass"})
    assert refused.is_error and "self_verify_blocked" in refused.content[0].text
    got = structured(await orch.call_tool("verify_story", sid | {"result": "pass"}))
    assert got["story"]["verified_status"] == "verified"
    history = structured(await orch.call_tool("get_story_history", sid))
    assert history["items"]


def test_lifecycle_over_stdio(world: dict[str, Any]) -> None:
    base = {"LOOPCTL_SERVER": world["server"].base_url, "LOOPCTL_API_KEY": ""}

    async def run() -> None:
        async with stdio_session(base | {"LOOPCTL_AGENT_KEY": world["implementer"].raw}) as a, \
                stdio_session(base | {"LOOPCTL_ORCH_KEY": world["orch"].raw}) as o, \
                stdio_session(base | {"LOOPCTL_ORCH_KEY": world["twin"].raw}) as tw:
            await drive_lifecycle(a, o, tw, world["story_id"])

    anyio.run(run)
    status = world["db"].execute("select agent_status, verified_status from app.stories "
                                 "where id = %s", (world["story_id"],)).fetchone()
    assert status == ("reported_done", "verified")


def test_lifecycle_over_streamable_http(world: dict[str, Any]) -> None:
    url = world["server"].base_url

    async def run() -> None:
        async with http_session(url, world["implementer"].raw) as a, \
                http_session(url, world["orch"].raw) as o, \
                http_session(url, world["twin"].raw) as tw:
            await drive_lifecycle(a, o, tw, world["story_id"])

    anyio.run(run)


def test_http_mcp_uses_the_callers_key_only(world: dict[str, Any]) -> None:
    async def run() -> None:
        async with http_session(world["server"].base_url, "lc_" + "n" * 40) as s:
            result = await s.call_tool("get_story", {"story_id": world["story_id"]})
        assert result.is_error and "invalid_api_key" in result.content[0].text

    anyio.run(run)


def test_every_tool_answers_through_its_real_route(world: dict[str, Any]) -> None:
    """Each tool's path and payload match a declared /api/v1 route (no 404/405/422)."""
    url, pid, sid = world["server"].base_url, world["project_id"], world["story_id"]

    async def run() -> None:
        async with http_session(url, world["user"].raw) as user, \
                http_session(url, world["orch"].raw) as orch, \
                http_session(url, world["implementer"].raw) as agent:
            calls: list[tuple[ClientSession, str, dict[str, Any]]] = [
                (user, "get_tenant", {}), (user, "list_projects", {}),
                (user, "get_progress", {"project_id": pid}),
                (user, "list_stories", {"project_id": pid, "agent_status": "pending"}),
                (user, "list_ready_stories", {"project_id": pid}),
                (user, "get_story", {"story_id": sid}),
                (user, "get_story_token_usage", {"story_id": sid}),
                (user, "get_cost_summary", {}), (user, "get_cost_anomalies", {}),
                (user, "list_routes", {}), (user, "get_changes", {}),
                (user, "verify_audit_chain", {}), (user, "get_system_articles", {}),
                (user, "get_story_history", {"story_id": sid}),
                (user, "set_token_budget", {"scope_type": "project", "scope_id": pid,
                                            "limit_tokens": 1000000}),
                (user, "import_stories", {"project_id": pid, "merge": True, "epics": [
                    {"number": 1, "title": "Launch", "stories": [
                        {"number": "1.2", "title": "Pricing page"}]}]}),
                (orch, "create_story", {"project_id": pid, "epic_id": world["epic_id"],
                                        "number": "1.3", "title": "Docs",
                                        "acceptance_criteria": ["written"]}),
                (orch, "dispatch", {"purpose": "help", "ttl_seconds": 60}),
                (agent, "report_token_usage", {"story_id": sid, "input_tokens": 10,
                                               "output_tokens": 5, "model_name": "m"}),
            ]
            for session, name, args in calls:
                result = await session.call_tool(name, args)
                assert not result.is_error, (name, result.content[0].text)
            criteria = structured(await user.call_tool("get_acceptance_criteria",
                                                       {"story_id": sid}))
            assert [c["description"] for c in criteria["items"]] == ["renders", "links work"]
            ready = structured(await user.call_tool("list_ready_stories", {"project_id": pid}))
            new = next(s for s in ready["stories"] if s["number"] == "1.2")
            done = structured(await orch.call_tool("backfill_story", {
                "story_id": new["id"], "reason": "shipped before loopctl"}))
            assert done["story"]["verified_status"] == "verified"
            created = structured(await user.call_tool("create_project",
                                                      {"name": "Tmp", "slug": "tmp"}))
            assert not (await user.call_tool("delete_project",
                                             {"project_id": created["id"]})).is_error

    anyio.run(run)


def test_knowledge_tools_answer_through_their_real_routes(world: dict[str, Any],
                                                          tmp_path: Any) -> None:
    url = world["server"].base_url

    async def run() -> None:
        async with http_session(url, world["user"].raw) as user:
            made = structured(await user.call_tool("knowledge_create", {
                "title": "Lock rows in a consistent order", "category": "convention",
                "body": "Sort ids before SELECT ... FOR UPDATE to avoid deadlocks.",
                "tags": ["postgres"]}))
            aid = made["id"]
            assert made["status"] == "draft"
            drafts = structured(await user.call_tool("knowledge_drafts", {}))
            assert [a["id"] for a in drafts["articles"]] == [aid]
            published = structured(await user.call_tool("knowledge_publish",
                                                         {"article_id": aid}))
            assert published["status"] == "published"
            found = structured(await user.call_tool("knowledge_search", {
                "query": "deadlocks", "mode": "keyword"}))
            assert [a["id"] for a in found["articles"]] == [aid]
            got = structured(await user.call_tool("knowledge_get", {"article_id": aid}))
            assert "FOR UPDATE" in got["article"]["body"]
            for name, args in (
                ("knowledge_index", {}), ("knowledge_context", {"story_id": world["story_id"]}),
                ("knowledge_lint", {}), ("knowledge_ingestion_jobs", {}),
                ("knowledge_ingest", {"text": "Always pin torch to the CPU build."}),
                ("knowledge_ingest_batch", {"items": [{"text": "Prefer SKIP LOCKED queues."}]}),
                ("knowledge_analytics_top", {}), ("knowledge_article_stats", {"article_id": aid}),
                ("knowledge_agent_usage", {}), ("knowledge_unused_articles", {}),
                ("knowledge_bulk_publish", {"article_ids": [aid]}),
                ("knowledge_unpublish", {"article_id": aid}),
                ("knowledge_archive", {"article_id": aid}),
            ):
                result = await user.call_tool(name, args)
                assert not result.is_error, (name, result.content[0].text)
            exported = structured(await user.call_tool("knowledge_export", {}))
            assert "_index.md" in exported["data"]["first_files"]
            refused = await user.call_tool("knowledge_export", {"path": str(tmp_path / "v.zip")})
            assert refused.is_error and "path_not_allowed" in refused.content[0].text
            assert not (await user.call_tool("knowledge_delete", {"article_id": aid})).is_error
            gone = await user.call_tool("knowledge_get", {"article_id": aid})
            assert gone.is_error and "not_found" in gone.content[0].text

    anyio.run(run)
