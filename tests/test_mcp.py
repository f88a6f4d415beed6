"""Issues #7 and #8: the MCP tool surface — names, typed schemas, refusals before any HTTP call."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
from mcp_sessions import stdio_session

SPEC_TOOLS = {
    "get_tenant", "list_projects", "create_project", "delete_project", "get_progress",
    "import_stories", "create_story", "backfill_story", "list_stories", "list_ready_stories",
    "get_story", "get_acceptance_criteria",
    "contract_story", "claim_story", "start_story", "request_review",
    "report_story", "review_complete", "verify_story", "reject_story", "verify_all_in_epic",
    "report_token_usage", "get_cost_summary", "get_story_token_usage", "get_cost_anomalies",
    "set_token_budget",
    "list_routes", "dispatch", "get_story_history", "get_changes", "verify_audit_chain",
    "get_system_articles",
    "knowledge_index", "knowledge_search", "knowledge_get", "knowledge_context",
    "knowledge_create", "knowledge_publish", "knowledge_bulk_publish", "knowledge_unpublish",
    "knowledge_archive", "knowledge_delete", "knowledge_drafts", "knowledge_lint",
    "knowledge_export", "knowledge_ingest", "knowledge_ingest_batch",
    "knowledge_ingestion_jobs", "knowledge_analytics_top", "knowledge_article_stats",
    "knowledge_agent_usage", "knowledge_unused_articles",
}

BAD_UUID = "not-a-uuid"
ZERO = "00000000-0000-0000-0000-000000000000"
# One invalid argument set per tool with inputs: each must be refused by the input schema.
BAD_ARGS: dict[str, dict[str, Any]] = {
    "create_project": {"name": "x", "slug": "Not A Slug"},
    "delete_project": {"project_id": BAD_UUID},
    "get_progress": {"project_id": BAD_UUID},
    "import_stories": {"project_id": ZERO, "epics": "not-a-list"},
    "create_story": {"project_id": ZERO, "epic_id": ZERO, "number": "1.1", "title": ""},
    "backfill_story": {"story_id": ZERO, "reason": ""},
    "list_stories": {"project_id": ZERO, "agent_status": "done"},
    "list_ready_stories": {"project_id": BAD_UUID},
    "get_story": {"story_id": BAD_UUID},
    "get_acceptance_criteria": {"story_id": BAD_UUID},
    "contract_story": {"story_id": ZERO, "story_title": "t", "ac_count": -1},
    "claim_story": {"story_id": BAD_UUID},
    "start_story": {"story_id": BAD_UUID},
    "request_review": {"story_id": BAD_UUID},
    "report_story": {"story_id": BAD_UUID},
    "review_complete": {"story_id": ZERO, "review_type": "code", "findings_count": -3},
    "verify_story": {"story_id": ZERO, "result": "fail"},
    "reject_story": {"story_id": ZERO, "reason": ""},
    "verify_all_in_epic": {"epic_id": BAD_UUID},
    "report_token_usage": {"story_id": ZERO, "input_tokens": -5, "output_tokens": 1,
                           "model_name": "m"},
    "get_story_token_usage": {"story_id": BAD_UUID},
    "set_token_budget": {"scope_type": "galaxy", "scope_id": ZERO},
    "list_routes": {"offset": -1},
    "dispatch": {"ttl_seconds": 5},
    "get_story_history": {"story_id": BAD_UUID},
    "get_changes": {"project_id": BAD_UUID},
    "get_system_articles": {"topic": "gossip"},
    "knowledge_index": {"category": "gossip"},
    "knowledge_search": {"query": ""},
    "knowledge_get": {"article_id": BAD_UUID},
    "knowledge_context": {"story_id": BAD_UUID},
    "knowledge_create": {"title": "t", "body": "b", "category": "rumour"},
    "knowledge_publish": {"article_id": BAD_UUID},
    "knowledge_bulk_publish": {"article_ids": []},
    "knowledge_unpublish": {"article_id": BAD_UUID},
    "knowledge_archive": {"article_id": BAD_UUID},
    "knowledge_delete": {"article_id": BAD_UUID},
    "knowledge_drafts": {"offset": -1},
    "knowledge_lint": {"stale_days": 0},
    "knowledge_export": {"project_id": BAD_UUID},
    "knowledge_ingest": {"text": ""},
    "knowledge_ingest_batch": {"items": [{"title": "no text"}]},
    "knowledge_ingestion_jobs": {"status": "lost"},
    "knowledge_analytics_top": {"days": 0},
    "knowledge_article_stats": {"article_id": BAD_UUID},
    "knowledge_agent_usage": {"days": 100000},
    "knowledge_unused_articles": {"days": -1},
}


class CountingServer:
    """A local HTTP server that counts requests: proves schemas refuse before any call."""

    def __init__(self) -> None:
        counter = self
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                counter.hits += 1
                self.send_response(500)
                self.end_headers()

            do_POST = do_GET  # noqa: N815
            do_DELETE = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_tool_list_matches_the_spec_and_every_tool_is_typed() -> None:
    async def run() -> None:
        async with stdio_session({"LOOPCTL_SERVER": "http://127.0.0.1:9"}) as s:
            tools = (await s.list_tools()).tools
        assert {t.name for t in tools} == SPEC_TOOLS
        for tool in tools:
            assert tool.input_schema["type"] == "object", tool.name
            assert tool.output_schema and tool.output_schema.get("type") == "object", tool.name
            assert tool.description, tool.name

    anyio.run(run)


def test_every_input_schema_rejects_bad_arguments_before_any_http_call() -> None:
    counting = CountingServer()
    try:
        async def run() -> None:
            env = {"LOOPCTL_SERVER": counting.url, "LOOPCTL_API_KEY": "lc_" + "x" * 40}
            async with stdio_session(env) as s:
                names = {t.name for t in (await s.list_tools()).tools
                         if t.input_schema.get("properties")}
                assert names == set(BAD_ARGS), names ^ set(BAD_ARGS)
                for name, args in BAD_ARGS.items():
                    result = await s.call_tool(name, args)
                    assert result.is_error, name
                # and a valid call does reach the server (the counter can count)
                await s.call_tool("get_story", {"story_id": ZERO})

        anyio.run(run)
        assert counting.hits == 1
    finally:
        counting.close()


def test_missing_key_is_named() -> None:
    async def run() -> None:
        env = {"LOOPCTL_SERVER": "http://127.0.0.1:9", "LOOPCTL_API_KEY": "",
               "LOOPCTL_AGENT_KEY": "", "LOOPCTL_ORCH_KEY": "", "LOOPCTL_USER_KEY": ""}
        async with stdio_session(env) as s:
            result = await s.call_tool("verify_story", {"story_id": ZERO, "result": "pass"})
        assert result.is_error
        assert "LOOPCTL_ORCH_KEY" in result.content[0].text

    anyio.run(run)
