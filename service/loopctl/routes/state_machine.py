"""Story lifecycle (SPEC §5): functions/state_machine.sql. Roles, state and the identity
gates are decided in SQL; these declarations only map HTTP fields to the named arguments."""

from __future__ import annotations

from typing import Any

from loopctl.gateway.declare import INTEGER, OBJECT, STRING, UUID, Param, body, path, route

IDS: dict[str, Any] = {"type": "array", "items": UUID, "minItems": 1, "maxItems": 50}
ARRAY: dict[str, Any] = {"type": "array"}
STORY_EXAMPLE = {"id": "7d1e0000-0000-4000-8000-000000000011", "number": "1.1",
                 "title": "Add login", "agent_status": "assigned",
                 "verified_status": "unverified",
                 "assigned_agent_id": "1c2d3e4f-0000-4000-8000-000000000003"}
TRANSITION_EXAMPLE = {"story": STORY_EXAMPLE, "next_actions": ["start", "unclaim",
                                                               "force_unclaim"]}
BULK_EXAMPLE = {"results": [{"story_id": STORY_EXAMPLE["id"], "ok": True, "status": 200,
                             "story": STORY_EXAMPLE, "next_actions": ["start"]}],
                "succeeded": 1, "failed": 0}
STORY_ID: dict[str, Param] = {"story_id": path("id")}
# The assigned agent decides, whatever role its key has.
ASSIGNED = ("agent", "orchestrator", "user")


def transition(action: str, function: str, summary: str, *, roles: tuple[str, ...],
               args: dict[str, Param] | None = None, aliases: tuple[str, ...] = (),
               status: int = 200, request_example: Any = None) -> Any:
    return route("POST", f"/api/v1/stories/{{id}}/{action}", function, tag="lifecycle",
                 args=STORY_ID | (args or {}), envelope="transition", roles=roles,
                 summary=summary, status=status,
                 aliases=tuple(f"/api/v1/stories/{{id}}/{a}" for a in aliases),
                 request_example=request_example, data_example=TRANSITION_EXAMPLE)


ROUTES = [
    transition("contract", "api.contract_story",
               "Commit to the whole scope: exact title and acceptance-criteria count",
               roles=("agent", "orchestrator"),
               args={"story_title": body("story_title", STRING, required=True),
                     "ac_count": body("ac_count", INTEGER, required=True)},
               request_example={"story_title": "Add login", "ac_count": 3}),
    transition("claim", "api.claim_story", "Claim a contracted story (dependencies verified)",
               roles=("agent",)),
    transition("start", "api.start_story", "Start implementing (the assigned agent)",
               roles=ASSIGNED, aliases=("start-work",)),
    transition("request-review", "api.request_review",
               "Ask for a review (the assigned agent; no status change)", roles=ASSIGNED),
    transition("report", "api.report_story",
               "Report the story done (any agent identity except the implementer)",
               roles=("agent", "orchestrator"), aliases=("report-done",),
               args={"artifact": body("artifact", OBJECT),
                     "token_usage": body("token_usage", OBJECT)},
               request_example={"artifact": {"type": "commit", "commit": "abc1234"}}),
    transition("review-complete", "api.review_complete",
               "Record a completed review (not the implementer)", status=201,
               roles=("orchestrator", "user"),
               args={"review_type": body("review_type", STRING, required=True),
                     "findings_count": body("findings_count", INTEGER),
                     "fixes_count": body("fixes_count", INTEGER),
                     "disproved_count": body("disproved_count", INTEGER),
                     "summary": body("summary", STRING),
                     "findings": body("findings", ARRAY)},
               request_example={"review_type": "code_review", "findings_count": 2,
                                "fixes_count": 2, "summary": "fixed both"}),
    transition("verify", "api.verify_story",
               "Verify (orchestrator with an agent identity, not the implementer)",
               roles=("orchestrator",),
               args={"result": body("result", {"type": "string", "enum": ["pass", "partial"]},
                                    required=True),
                     "summary": body("summary", STRING),
                     "review_type": body("review_type", STRING)},
               request_example={"result": "pass", "summary": "all criteria met"}),
    transition("reject", "api.reject_story", "Reject (not the implementer)",
               roles=("orchestrator", "user"),
               args={"reason": body("reason", STRING, required=True),
                     "findings": body("findings", {})},
               request_example={"reason": "AC-2 not covered"}),
    transition("unclaim", "api.unclaim_story", "Give the story back (the assigned agent)",
               roles=ASSIGNED),
    transition("force-unclaim", "api.force_unclaim_story",
               "Return any story to pending (verified status kept)",
               roles=("orchestrator", "user")),
    transition("backfill", "api.backfill_story",
               "Mark a never-started story done and verified, with the reason on record",
               roles=("orchestrator", "user"),
               args={"reason": body("reason", STRING, required=True),
                     "evidence_url": body("evidence_url", STRING)},
               request_example={"reason": "shipped before loopctl"}),
    route("POST", "/api/v1/stories/bulk/claim", "api.bulk_claim", tag="lifecycle",
          args={"story_ids": body("story_ids", IDS, required=True)}, envelope="transition",
          roles=("agent",), summary="Claim up to 50 stories (per-item results)",
          data_example=BULK_EXAMPLE),
    route("POST", "/api/v1/stories/bulk/verify", "api.bulk_verify", tag="lifecycle",
          args={"story_ids": body("story_ids", IDS, required=True),
                "result": body("result", {"type": "string", "enum": ["pass", "partial"]}),
                "summary": body("summary", STRING),
                "review_type": body("review_type", STRING)},
          envelope="transition", roles=("orchestrator",),
          summary="Verify up to 50 stories through the same gates (per-item results)",
          data_example=BULK_EXAMPLE),
    route("POST", "/api/v1/stories/bulk/reject", "api.bulk_reject", tag="lifecycle",
          args={"story_ids": body("story_ids", IDS, required=True),
                "reason": body("reason", STRING, required=True)},
          envelope="transition", roles=("orchestrator", "user"),
          summary="Reject up to 50 stories (per-item results)", data_example=BULK_EXAMPLE),
    route("POST", "/api/v1/epics/{id}/verify-all", "api.verify_all_in_epic", tag="lifecycle",
          args={"epic_id": path("id"), "summary": body("summary", STRING),
                "review_type": body("review_type", STRING)},
          envelope="transition", roles=("orchestrator",),
          summary="Verify every reported story of an epic through the same gates",
          data_example=BULK_EXAMPLE),
]
