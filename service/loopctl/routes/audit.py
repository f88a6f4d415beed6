"""Audit trail, chain verification, change feed, story history (SPEC §6):
functions/audit.sql."""

from __future__ import annotations

from loopctl.gateway.declare import UUID, path, query, route

ALL = ("user", "orchestrator", "agent")
ENTRY = {"seq": 42, "action": "update", "entity_type": "story",
         "entity_id": "0f1e2d3c-0000-4000-8000-000000000030",
         "created_at": "2026-11-25T10:00:00Z"}

ROUTES = [
    route("GET", "/api/v1/audit", "api.audit_entries", tag="audit", envelope="list",
          args={"entity_type": query("entity_type"), "entity_id": query("entity_id", UUID),
                "actor": query("actor", UUID),
                "since": query("since", {"type": "string", "format": "date-time"}),
                "limit": query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                "offset": query("offset", {"type": "integer", "minimum": 0})},
          roles=("user", "orchestrator"), summary="Query the audit trail",
          data_example=[ENTRY]),
    route("GET", "/api/v1/audit/verify", "api.verify_audit_chain", tag="audit",
          roles=("user", "orchestrator"),
          summary="Check the tenant's hash chain; names the first broken link",
          data_example={"ok": True, "checked": 42, "unsealed": 0, "head": {"seq": 42},
                        "first_broken": None}),
    route("GET", "/api/v1/changes", "api.changes", tag="audit", envelope="list",
          args={"since": query("since", description="cursor or ISO-8601 timestamp"),
                "project_id": query("project_id", UUID),
                "entity_type": query("entity_type"), "action": query("action"),
                "limit": query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})},
          roles=ALL, summary="Change feed (monotonic cursor)", data_example=[ENTRY]),
    route("GET", "/api/v1/stories/{id}/history", "api.story_history", tag="audit",
          envelope="list", args={"story_id": path("id")}, roles=ALL,
          summary="The story's custody chain", data_example=[ENTRY]),
]
