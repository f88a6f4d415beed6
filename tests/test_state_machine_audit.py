"""Issue #3: the audit trail names every row a transition writes by the transition."""

from __future__ import annotations

import psycopg
from sm_support import call, make_story, make_world, review, run_to_reported


def actions_for(db: psycopg.Connection, tenant_id: str, entity_type: str) -> list[str]:
    return [r[0] for r in db.execute(
        "select action from audit.entries where tenant_id = %s and entity_type = %s "
        "order by id", (tenant_id, entity_type))]


def test_review_and_verification_rows_carry_their_transition(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1", ac=1)
    run_to_reported(db, w, sid)
    assert review(db, w.orchestrator, sid).status == 201
    assert call(db, w.orchestrator, "reject_story", story_id=sid, reason="tests missing"
                ).status == 200
    assert actions_for(db, w.tenant_id, "review") == ["story.review_complete"]
    assert actions_for(db, w.tenant_id, "verification_result") == ["story.reject"]
