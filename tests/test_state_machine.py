"""Issue #3: the story lifecycle (SPEC §5) through the api.* SQL functions, as API keys."""

from __future__ import annotations

import psycopg
from sm_support import (
    ac_count,
    call,
    events,
    make_epic,
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


def test_wrong_state_is_409_with_current_statuses(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1")
    cases = [
        (w.implementer, "claim_story", {}),
        (w.implementer, "start_story", {}),
        (w.reporter, "report_story", {}),
        (w.orchestrator, "verify_story", {"result": "pass"}),
        (w.orchestrator, "reject_story", {"reason": "no"}),
        (w.orchestrator, "force_unclaim_story", {}),
        (w.implementer, "unclaim_story", {}),
        (w.implementer, "request_review", {}),
    ]
    for key, fn, args in cases:
        r = call(db, key, fn, story_id=sid, **args)
        assert (r.status, r.code) == (409, "invalid_transition"), fn
        assert r.details["current_agent_status"] == "pending"
        assert r.details["current_verified_status"] == "unverified"
        assert r.details["attempted_action"] == fn.removesuffix("_story")
    run_to_reported(db, w, sid)
    r = call(db, w.implementer, "contract_story", story_id=sid, story_title="Story 1.1",
             ac_count=2)
    assert (r.status, r.code) == (409, "invalid_transition")
    assert r.details == {"current_agent_status": "reported_done",
                         "current_verified_status": "unverified",
                         "attempted_action": "contract"}
    assert story_row(db, sid)["agent_status"] == "reported_done"


def test_contract_must_match_title_and_criteria_count(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1", ac=3, title="Add login")
    for title, count in (("Add Login", 3), ("Add login", 2), (None, 3), ("Add login", None)):
        r = call(db, w.implementer, "contract_story", story_id=sid, story_title=title,
                 ac_count=count)
        assert (r.status, r.code) == (422, "contract_mismatch")
        assert r.details == {"expected_title": "Add login", "expected_ac_count": 3,
                             "got_title": title, "got_ac_count": count}
    assert story_row(db, sid)["agent_status"] == "pending"
    r = call(db, w.orchestrator, "contract_story", story_id=sid, story_title="Add login",
             ac_count=3)
    assert r.status == 200 and r.body["story"]["contracted_by_agent_id"] == w.orchestrator.agent_id


def test_claim_names_unverified_blockers(db: psycopg.Connection) -> None:
    w = make_world(db)
    dep = make_story(db, w, "1.1")
    epic2 = make_epic(db, w, 2)
    sid = make_story(db, w, "2.1", epic_id=epic2)
    other_in_epic1 = make_story(db, w, "1.2")
    db.execute("insert into app.story_dependencies (tenant_id, story_id, depends_on_story_id) "
               "values (%s, %s, %s)", (w.tenant_id, sid, dep))
    db.execute("insert into app.epic_dependencies (tenant_id, epic_id, depends_on_epic_id) "
               "values (%s, %s, %s)", (w.tenant_id, epic2, w.epic_id))
    assert call(db, w.implementer, "contract_story", story_id=sid, story_title="Story 2.1",
                ac_count=2).status == 200
    r = call(db, w.implementer, "claim_story", story_id=sid)
    assert (r.status, r.code) == (409, "dependencies_not_verified")
    blockers = {(b["story_id"], b["number"], b["via"], b["agent_status"], b["verified_status"])
                for b in r.details["blockers"]}
    assert blockers == {(dep, "1.1", "story_dependency", "pending", "unverified"),
                        (dep, "1.1", "epic_dependency", "pending", "unverified"),
                        (other_in_epic1, "1.2", "epic_dependency", "pending", "unverified")}
    assert all(b["title"] for b in r.details["blockers"])
    # Verify both prerequisites (backfill: never started) and the claim goes through.
    for s in (dep, other_in_epic1):
        assert call(db, w.user, "backfill_story", story_id=s, reason="legacy").status == 200
    r = call(db, w.implementer, "claim_story", story_id=sid)
    assert r.status == 200 and r.body["story"]["agent_status"] == "assigned"


def test_verify_needs_a_review_after_the_report(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1")
    run_to_reported(db, w, sid)
    r = call(db, w.orchestrator, "verify_story", story_id=sid, result="pass")
    assert (r.status, r.code) == (422, "review_not_conducted")
    assert review(db, w.orchestrator, sid).status == 201
    r = call(db, w.orchestrator, "verify_story", story_id=sid, result="fail")
    assert (r.status, r.code) == (422, "invalid_result")
    assert story_row(db, sid)["verified_status"] == "unverified"
    assert call(db, w.orchestrator, "verify_story", story_id=sid, result="pass").status == 200


def test_reject_auto_resets_by_default(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1")
    run_to_reported(db, w, sid)
    r = call(db, w.user, "reject_story", story_id=sid, reason="incomplete")
    assert r.status == 200 and r.body["auto_reset"] is True
    row = story_row(db, sid)
    assert (row["agent_status"], row["verified_status"]) == ("pending", "rejected")
    assert row["assigned_agent_id"] is None and row["implementer_root"] is None
    assert events(db, sid)[-3:] == ["story.status_changed", "story.rejected", "story.auto_reset"]
    # Back to work: contract and claim again, by another agent this time.
    assert call(db, w.reporter, "contract_story", story_id=sid, story_title="Story 1.1",
                ac_count=2).status == 200
    assert call(db, w.reporter, "claim_story", story_id=sid).status == 200


def test_reject_without_auto_reset_keeps_the_assignment(db: psycopg.Connection) -> None:
    w = make_world(db, settings={"auto_reset_on_reject": False})
    sid = make_story(db, w, "1.1")
    run_to_reported(db, w, sid)
    r = call(db, w.orchestrator, "reject_story", story_id=sid, reason="incomplete")
    assert r.status == 200 and r.body["auto_reset"] is False
    row = story_row(db, sid)
    assert (row["agent_status"], row["verified_status"]) == ("reported_done", "rejected")
    assert row["assigned_agent_id"] == w.implementer.agent_id
    assert "story.auto_reset" not in events(db, sid)
    rows = db.execute("select iteration, result, summary from app.verification_results "
                      "where story_id = %s", (sid,)).fetchall()
    assert rows == [(1, "reject", "incomplete")]


def test_unclaim_and_force_unclaim(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1")
    for fn, args in (("contract_story", {"story_title": "Story 1.1", "ac_count": 2}),
                     ("claim_story", {})):
        assert call(db, w.implementer, fn, story_id=sid, **args).status == 200
    r = call(db, w.reporter, "start_story", story_id=sid)
    assert (r.status, r.code) == (403, "not_assigned_agent")
    r = call(db, w.reporter, "unclaim_story", story_id=sid)
    assert (r.status, r.code) == (403, "not_assigned_agent")
    r = call(db, w.implementer, "unclaim_story", story_id=sid)
    assert r.status == 200 and r.body["story"]["assigned_agent_id"] is None
    assert r.body["next_actions"] == ["contract"]  # claimed once: no longer backfillable
    run_to_reported(db, w, sid)
    assert review(db, w.orchestrator, sid).status == 201
    assert call(db, w.orchestrator, "verify_story", story_id=sid, result="pass").status == 200
    r = call(db, w.implementer, "force_unclaim_story", story_id=sid)
    assert (r.status, r.code) == (403, "insufficient_role")
    r = call(db, w.orchestrator, "force_unclaim_story", story_id=sid)
    assert r.status == 200
    row = story_row(db, sid)
    assert (row["agent_status"], row["verified_status"], row["assigned_agent_id"]) == (
        "pending", "verified", None)
    assert events(db, sid)[-1] == "story.force_unclaimed"


def test_roles_are_exact(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1")
    r = call(db, w.user, "contract_story", story_id=sid, story_title="Story 1.1", ac_count=2)
    assert (r.status, r.code) == (403, "insufficient_role")
    assert call(db, w.orchestrator, "contract_story", story_id=sid, story_title="Story 1.1",
                ac_count=2).status == 200
    r = call(db, w.orchestrator, "claim_story", story_id=sid)  # claim is agent-only
    assert (r.status, r.code) == (403, "insufficient_role")
    r = call(db, w.user, "verify_story", story_id=sid, result="pass")  # verify: orchestrator
    assert (r.status, r.code) == (403, "insufficient_role")
    r = call(db, w.implementer, "backfill_story", story_id=sid, reason="x")
    assert (r.status, r.code) == (403, "insufficient_role")


def test_another_tenants_story_is_not_found(db: psycopg.Connection) -> None:
    a, b = make_world(db), make_world(db)
    sid = make_story(db, a, "1.1")
    for key, fn, args in (
        (b.implementer, "contract_story", {"story_title": "Story 1.1", "ac_count": 2}),
        (b.orchestrator, "force_unclaim_story", {}),
        (b.user, "backfill_story", {"reason": "mine now"}),
    ):
        r = call(db, key, fn, story_id=sid, **args)
        assert (r.status, r.code) == (404, "story_not_found"), fn
    r = call(db, b.orchestrator, "verify_all_in_epic", epic_id=a.epic_id)
    assert (r.status, r.code) == (404, "epic_not_found")
    r = call(db, b.implementer, "bulk_claim", story_ids=[sid])
    assert r.body["results"][0]["status"] == 404
    assert story_row(db, sid)["agent_status"] == "pending"
    assert db.execute("select count(*) from app.events where entity_id = %s",
                      (sid,)).fetchone()[0] == 0


def test_report_records_token_usage_and_rejects_bad_artifacts(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1")
    for fn, args in (("contract_story", {"story_title": "Story 1.1", "ac_count": 2}),
                     ("claim_story", {}), ("start_story", {})):
        assert call(db, w.implementer, fn, story_id=sid, **args).status == 200
    for bad in ({"path": "x"}, {"type": "commit", "commit": "not-hex"}, ["commit"],
                {"type": "commit", "details": "text"}):
        r = call(db, w.reporter, "report_story", story_id=sid, artifact=bad)
        assert (r.status, r.code) == (422, "invalid_artifact"), bad
    assert story_row(db, sid)["agent_status"] == "implementing"
    r = call(db, w.reporter, "report_story", story_id=sid,
             token_usage={"input_tokens": 1000, "output_tokens": 200, "model_name": "m-1",
                          "cost_millicents": 50})
    assert r.status == 200, r
    rows = db.execute("select input_tokens, output_tokens, agent_id::text "
                      "from app.token_usage_reports where story_id = %s", (sid,)).fetchall()
    assert rows == [(1000, 200, w.reporter.agent_id)]


def test_bulk_claim_and_reject_report_per_item(db: psycopg.Connection) -> None:
    w = make_world(db)
    s1, s2, s3 = (make_story(db, w, n) for n in ("1.1", "1.2", "1.3"))
    for s, n in ((s1, "1.1"), (s2, "1.2")):
        assert call(db, w.implementer, "contract_story", story_id=s, story_title=f"Story {n}",
                    ac_count=2).status == 200
    r = call(db, w.implementer, "bulk_claim", story_ids=[s1, s3, s2])
    assert [(i["story_id"], i["ok"], i["status"]) for i in r.body["results"]] == [
        (s1, True, 200), (s3, False, 409), (s2, True, 200)]
    assert r.body["results"][1]["error"]["code"] == "invalid_transition"
    assert (r.body["succeeded"], r.body["failed"]) == (2, 1)
    assert story_row(db, s1)["agent_status"] == story_row(db, s2)["agent_status"] == "assigned"

    for s in (s1, s2):
        assert call(db, w.implementer, "start_story", story_id=s).status == 200
        assert call(db, w.reporter, "report_story", story_id=s).status == 200
    r = call(db, w.orchestrator, "bulk_reject", story_ids=[s1, s2], reason="")
    assert [i["error"]["code"] for i in r.body["results"]] == ["invalid_input"] * 2
    r = call(db, w.orchestrator, "bulk_reject", story_ids=[s1, s2, s3], reason="redo")
    assert (r.body["succeeded"], r.body["failed"]) == (2, 1)
    assert story_row(db, s1)["verified_status"] == "rejected"


def test_bulk_limits(db: psycopg.Connection) -> None:
    w = make_world(db)
    ids = [make_story(db, w, f"1.{i}") for i in range(51)]
    for story_ids in (ids, []):
        r = call(db, w.orchestrator, "bulk_verify", story_ids=story_ids)
        assert (r.status, r.code) == (422, "invalid_bulk_request")
    r = call(db, w.orchestrator, "bulk_verify", story_ids=ids[:50])
    assert r.status == 200 and r.body["failed"] == 50
