"""Issue #3: the story lifecycle (SPEC §5) through the api.* SQL functions, as API keys."""

from __future__ import annotations

import psycopg
from sm_support import (
    ac_count,
    call,
    events,
    make_story,
    make_world,
    review,
    run_to_reported,
    story_row,
)


def test_full_lifecycle_by_two_agents_and_an_orchestrator(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1", ac=3)

    r = call(db, w.implementer, "contract_story", story_id=sid, story_title="Story 1.1",
             ac_count=3)
    assert r.status == 200 and r.body["story"]["agent_status"] == "contracted"
    assert r.body["next_actions"] == ["claim", "force_unclaim"]
    r = call(db, w.implementer, "claim_story", story_id=sid)
    assert r.body["story"]["agent_status"] == "assigned"
    assert r.body["story"]["assigned_agent_id"] == w.implementer.agent_id
    assert r.body["story"]["implementer_root"] == w.implementer.agent_id
    r = call(db, w.implementer, "start_story", story_id=sid)
    assert r.body["story"]["agent_status"] == "implementing"
    r = call(db, w.implementer, "request_review", story_id=sid)
    assert r.status == 200 and r.body["story"]["agent_status"] == "implementing"
    r = call(db, w.reporter, "report_story", story_id=sid,
             artifact={"type": "commit", "path": "src/x.py", "commit": "abc1234",
                       "details": {"lines": 10}})
    assert r.status == 200 and r.body["story"]["agent_status"] == "reported_done"
    assert r.body["story"]["reported_by_agent_id"] == w.reporter.agent_id
    r = review(db, w.orchestrator, sid)
    assert r.status == 201 and r.body["review"]["review_type"] == "code_review"
    r = call(db, w.orchestrator, "verify_story", story_id=sid, result="pass", summary="ok",
             review_type="code_review")
    assert r.status == 200, r
    assert r.body["story"]["verified_status"] == "verified"
    assert r.body["story"]["verified_by_agent_id"] == w.orchestrator.agent_id
    assert r.body["next_actions"] == ["force_unclaim", "reject"]
    assert r.body["epic_completed"] is True

    row = story_row(db, sid)
    assert (row["agent_status"], row["verified_status"]) == ("reported_done", "verified")
    assert all(row[c] for c in ("contracted_at", "claimed_at", "started_at",
                                "reported_done_at", "verified_at"))
    reviews = db.execute("select reviewer_agent_id::text, findings_count from app.reviews "
                         "where story_id = %s", (sid,)).fetchall()
    assert reviews == [(w.orchestrator.agent_id, 1)]
    results = db.execute("select iteration, result, verifier_agent_id::text "
                         "from app.verification_results where story_id = %s", (sid,)).fetchall()
    assert results == [(1, "pass", w.orchestrator.agent_id)]
    artifacts = db.execute("select artifact_type, commit_sha, reported_by_agent_id::text "
                           "from app.artifacts where story_id = %s", (sid,)).fetchall()
    assert artifacts == [("commit", "abc1234", w.reporter.agent_id)]
    assert events(db, sid) == [
        "story.status_changed", "story.contracted", "story.status_changed", "story.claimed",
        "story.status_changed", "story.started", "story.review_requested",
        "story.status_changed", "story.reported", "story.review_completed",
        "story.status_changed", "story.verified"]
    changed = db.execute("select payload from app.events where entity_id = %s "
                         "and event_type = 'story.status_changed' order by id desc limit 1",
                         (sid,)).fetchone()[0]
    assert changed["from"] == {"agent_status": "reported_done", "verified_status": "unverified"}
    assert changed["to"] == {"agent_status": "reported_done", "verified_status": "verified"}
    completed = db.execute("select entity_id::text from app.events "
                           "where event_type = 'epic.completed'").fetchall()
    assert completed == [(w.epic_id,)]


def test_second_verification_iteration_after_rejection(db: psycopg.Connection) -> None:
    w = make_world(db, settings={"auto_reset_on_reject": False})
    sid = make_story(db, w, "1.1")
    run_to_reported(db, w, sid)
    assert review(db, w.orchestrator, sid).status == 201
    r = call(db, w.orchestrator, "reject_story", story_id=sid, reason="tests missing",
             findings=[{"issue": "no tests"}])
    assert r.status == 200 and r.body["auto_reset"] is False
    assert r.body["story"]["verified_status"] == "rejected"
    # The old review predates the rejection: a fresh one is needed.
    r = call(db, w.orchestrator, "verify_story", story_id=sid, result="pass")
    assert (r.status, r.code) == (422, "review_not_conducted")
    assert review(db, w.orchestrator, sid).status == 201
    r = call(db, w.orchestrator, "verify_story", story_id=sid, result="partial")
    assert r.status == 200 and r.body["iteration"] == 2
    rows = db.execute("select iteration, result from app.verification_results "
                      "where story_id = %s order by iteration", (sid,)).fetchall()
    assert rows == [(1, "reject"), (2, "partial")]
    assert ac_count(db, sid) == 2
