"""Cost intelligence (SPEC §8): functions/cost.sql and functions/budgets.sql."""

from __future__ import annotations

from typing import Any

from loopctl.gateway.declare import (
    BOOLEAN,
    INTEGER,
    LIMIT,
    OBJECT,
    OFFSET,
    STRING,
    UUID,
    body,
    path,
    query,
    route,
)

ANY_KEY = ("user", "orchestrator", "agent")
COUNT = INTEGER | {"minimum": 0}
DATE = {"type": "string", "format": "date"}
STORY_ID = "7d1c2b3a-0000-4000-8000-000000000010"
USAGE_EXAMPLE: dict[str, Any] = {
    "id": "3e4f5a6b-0000-4000-8000-000000000011", "story_id": STORY_ID,
    "agent_id": "1c2d3e4f-0000-4000-8000-000000000003", "input_tokens": 12000,
    "output_tokens": 3400, "total_tokens": 15400, "model_name": "sonnet",
    "cost_millicents": 5200, "phase": "implement", "corrects_id": None, "deleted_at": None,
    "created_at": "2026-11-25T10:00:00Z"}
BUDGET_EXAMPLE: dict[str, Any] = {
    "id": "8a9b0c1d-0000-4000-8000-000000000012", "scope_type": "project",
    "scope_id": "2b3c4d5e-0000-4000-8000-000000000013", "limit_millicents": 5000000,
    "limit_tokens": None, "alert_threshold_pct": None, "effective_threshold_pct": 80,
    "mode": "block", "spent_millicents": 1200000, "spent_tokens": 2400000, "pct_used": 24.0,
    "fired": []}
ANOMALY_EXAMPLE: dict[str, Any] = {
    "id": "4c5d6e7f-0000-4000-8000-000000000014", "story_id": STORY_ID,
    "anomaly_type": "high_cost", "observed_millicents": 90000, "baseline_median": 10200,
    "baseline_mad": 900, "robust_z": 59.8, "peer_scope": "epic", "peer_count": 7,
    "resolved_at": None}

USAGE_FIELDS = {
    "input_tokens": body("input_tokens", COUNT, required=True),
    "output_tokens": body("output_tokens", COUNT, required=True),
    "model_name": body("model_name", STRING, required=True),
    "cost_millicents": body("cost_millicents", COUNT, required=True),
    "phase": body("phase", STRING), "session_id": body("session_id", STRING),
    "skill_version_id": body("skill_version_id", UUID),
    "tool_call_count": body("tool_call_count", COUNT),
    "tests_run_count": body("tests_run_count", COUNT),
    "metadata": body("metadata", OBJECT, description="free-form, at most 16,000 characters"),
}
CORRECTION_FIELDS = {k: body(p.name, p.schema, description=p.description)
                     for k, p in USAGE_FIELDS.items()} | {
    "reason": body("reason", STRING, description="why the report is corrected")}
PAGE = {"limit": query("limit", LIMIT), "offset": query("offset", OFFSET)}

ROUTES = [
    route("POST", "/api/v1/token-usage", "api.report_token_usage", tag="cost", status=201,
          args={"story_id": body("story_id", UUID, required=True)} | USAGE_FIELDS,
          roles=("agent", "orchestrator"),
          summary="Report tokens spent on a story (the agent comes from the key)",
          description="402 budget_exceeded when a blocking budget covering the story, its "
                      "epic, its project or the agent is exhausted.",
          request_example={"story_id": STORY_ID, "input_tokens": 12000,
                           "output_tokens": 3400, "model_name": "sonnet",
                           "cost_millicents": 5200, "phase": "implement"},
          data_example=USAGE_EXAMPLE | {"budgets": [], "budget_events": [], "anomalies": []}),
    route("POST", "/api/v1/token-usage/{id}/correct", "api.correct_token_usage", tag="cost",
          status=201, args={"report_id": path("id")} | CORRECTION_FIELDS, roles=ANY_KEY,
          summary="Correct a usage report: a new row pointing at the corrected one",
          request_example={"cost_millicents": 4100, "reason": "cache hits double-counted"},
          data_example=USAGE_EXAMPLE | {"corrects_id": USAGE_EXAMPLE["id"]}),
    route("DELETE", "/api/v1/token-usage/{id}", "api.delete_token_usage", tag="cost",
          args={"report_id": path("id")}, roles=("user",),
          summary="Soft-delete a usage report (user keys only)",
          data_example=USAGE_EXAMPLE | {"deleted_at": "2026-11-25T11:00:00Z"}),
    route("GET", "/api/v1/stories/{id}/token-usage", "api.list_story_token_usage", tag="cost",
          args={"story_id": path("id")}, envelope="list", roles=ANY_KEY,
          summary="Effective usage reports of a story; totals and governing budget in meta",
          data_example=[USAGE_EXAMPLE]),
    route("POST", "/api/v1/budgets", "api.set_token_budget", tag="budgets", status=201,
          args={"scope_type": body("scope_type", {"type": "string", "enum": [
                    "project", "epic", "story", "agent"]}, required=True),
                "scope_id": body("scope_id", UUID, required=True),
                "limit_millicents": body("limit_millicents", INTEGER | {"minimum": 1}),
                "limit_tokens": body("limit_tokens", INTEGER | {"minimum": 1}),
                "alert_threshold_pct": body("alert_threshold_pct",
                                            INTEGER | {"minimum": 1, "maximum": 100}),
                "mode": body("mode", {"type": "string", "enum": ["warn", "block"]})},
          roles=("user", "orchestrator"),
          summary="Create or replace the budget of a project, epic, story or agent",
          request_example={"scope_type": "project", "scope_id": BUDGET_EXAMPLE["scope_id"],
                           "limit_millicents": 5000000, "mode": "block"},
          data_example=BUDGET_EXAMPLE),
    route("GET", "/api/v1/budgets", "api.list_budgets", tag="budgets", envelope="list",
          args={"scope_type": query("scope_type")}, roles=ANY_KEY,
          summary="Budgets with their use", data_example=[BUDGET_EXAMPLE]),
    route("DELETE", "/api/v1/budgets/{id}", "api.delete_budget", tag="budgets",
          args={"budget_id": path("id")}, roles=("user", "orchestrator"),
          summary="Delete a budget",
          data_example={"id": BUDGET_EXAMPLE["id"], "deleted": True}),
    route("GET", "/api/v1/cost/anomalies", "api.list_cost_anomalies", tag="cost",
          envelope="list",
          args={"resolved": query("resolved", BOOLEAN), "project_id": query("project_id", UUID),
                "story_id": query("story_id", UUID)} | PAGE,
          roles=ANY_KEY, summary="Cost anomalies (open ones unless resolved=true)",
          data_example=[ANOMALY_EXAMPLE]),
    route("POST", "/api/v1/cost/anomalies/{id}/resolve", "api.resolve_cost_anomaly",
          tag="cost", args={"anomaly_id": path("id"), "note": body("note", STRING)},
          roles=("user",), summary="Resolve a cost anomaly (user keys only)",
          request_example={"note": "large refactor, expected"},
          data_example=ANOMALY_EXAMPLE | {"resolved_at": "2026-11-25T11:00:00Z"}),
    route("GET", "/api/v1/analytics/agents", "api.analytics_agents", tag="analytics",
          envelope="list", args=dict(PAGE), roles=ANY_KEY,
          summary="Per-agent ranking: agent, tokens, stories, tokens/story, model, budget %",
          data_example=[{"agent": "worker-3", "tokens": 142880, "stories": 8,
                         "tokens_per_story": 17860, "dominant_model": "sonnet",
                         "budget_pct": 43}]),
    route("GET", "/api/v1/analytics/models", "api.analytics_models", tag="analytics",
          envelope="list", args=dict(PAGE), roles=ANY_KEY, summary="Model mix",
          data_example=[{"model_name": "opus", "reports": 40, "tokens": 893200,
                         "cost_millicents": 2100000, "token_share_pct": 71.2}]),
    route("GET", "/api/v1/analytics/projects", "api.analytics_projects", tag="analytics",
          envelope="list", args=dict(PAGE), roles=ANY_KEY, summary="Cost per project"),
    route("GET", "/api/v1/analytics/epics", "api.analytics_epics", tag="analytics",
          envelope="list", args={"project_id": query("project_id", UUID)} | PAGE,
          roles=ANY_KEY, summary="Cost per epic"),
    route("GET", "/api/v1/analytics/daily", "api.analytics_daily", tag="analytics",
          envelope="list",
          args={"project_id": query("project_id", UUID), "since": query("since", DATE),
                "until": query("until", DATE)} | PAGE,
          roles=ANY_KEY, summary="Daily cost trend (UTC days)"),
    route("POST", "/api/v1/skills", "api.create_skill", tag="skills", status=201,
          args={"name": body("name", STRING, required=True),
                "description": body("description", STRING)},
          roles=("user", "orchestrator"), summary="Create a skill (a named prompt)",
          request_example={"name": "implement-story"}),
    route("GET", "/api/v1/skills", "api.list_skills", tag="skills", envelope="list",
          roles=ANY_KEY, summary="Skills and their versions"),
    route("POST", "/api/v1/skills/{id}/versions", "api.create_skill_version", tag="skills",
          status=201,
          args={"skill_id": path("id"), "prompt_text": body("prompt_text", STRING,
                                                            required=True),
                "changelog": body("changelog", STRING)},
          roles=("user", "orchestrator"), summary="Add a version to a skill",
          request_example={"prompt_text": "You implement one story...",
                           "changelog": "shorter context"}),
    route("GET", "/api/v1/skills/{id}/cost-performance", "api.skill_cost_performance",
          tag="skills", args={"skill_id": path("id")}, roles=ANY_KEY,
          summary="Cost per skill version, with cost regressions flagged"),
]
