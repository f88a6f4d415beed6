"""Issue #3: the three identity gates refuse the implementer on every path — its own key, a
second key bound to the same agent, a dispatch child of its lineage, bulk verify,
verify-all and backfill — and each attempt is recorded (committed) and can halt custody."""

from __future__ import annotations

import psycopg
import pytest
from sm_support import (
    World,
    call,
    dispatch_child,
    make_story,
    make_world,
    new_key_for_agent,
    review,
    run_to_reported,
    story_row,
)

from loopctl.testing import Key, as_api_role, as_key, create_agent_key


def violations(db: psycopg.Connection, story_id: str) -> list[tuple[str, str]]:
    return db.execute("select action, code from app.custody_violations where story_id = %s "
                      "order by id", (story_id,)).fetchall()


def implementing_story(db: psycopg.Connection, w: World, number: str,
                       implementer: Key | None = None) -> str:
    sid = make_story(db, w, number)
    impl = implementer or w.implementer
    for fn, args in (("contract_story", {"story_title": f"Story {number}", "ac_count": 2}),
                     ("claim_story", {}), ("start_story", {})):
        assert call(db, impl, fn, story_id=sid, **args).status == 200
    return sid


def implementer_aliases(db: psycopg.Connection, w: World) -> dict[str, dict[str, Key]]:
    """For each role: the implementer's own agent under a second key, and a dispatched
    child of its lineage."""
    return {role: {"second key": new_key_for_agent(db, w.tenant_id, w.implementer.agent_id,
                                                   role),
                   "dispatch child": dispatch_child(db, w.tenant_id, w.implementer, role)}
            for role in ("agent", "orchestrator")}


def test_implementer_cannot_report_its_own_story(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = implementing_story(db, w, "1.1")
    aliases = implementer_aliases(db, w)
    for who, key in [("own key", w.implementer), *aliases["agent"].items(),
                     *aliases["orchestrator"].items()]:
        r = call(db, key, "report_story", story_id=sid)
        assert (r.status, r.code) == (409, "self_report_blocked"), who
        assert r.details["attempted_action"] == "report"
    assert story_row(db, sid)["agent_status"] == "implementing"
    # Every attempt is on record (committed although the call was refused), with an event.
    assert violations(db, sid) == [("report", "self_report_blocked")] * 5
    n = db.execute("select count(*) from app.events where event_type = 'custody.violation' "
                   "and entity_id = %s", (sid,)).fetchone()[0]
    assert n == 5
    # A distinct agent may report.
    assert call(db, w.reporter, "report_story", story_id=sid).status == 200


def test_implementer_cannot_review_or_verify_its_own_story(db: psycopg.Connection) -> None:
    w = make_world(db)
    # The implementer here works under an orchestrator key, so the verify gate (not the
    # role check) is what refuses it.
    impl_orch = create_agent_key(db, w.tenant_id, "agent", "impl2")
    sid = implementing_story(db, w, "1.1", implementer=impl_orch)
    assert call(db, w.reporter, "report_story", story_id=sid).status == 200
    second = new_key_for_agent(db, w.tenant_id, impl_orch.agent_id, "orchestrator")
    child = dispatch_child(db, w.tenant_id, impl_orch, "orchestrator")
    for who, key in (("second key", second), ("dispatch child", child)):
        r = review(db, key, sid)
        assert (r.status, r.code) == (409, "self_review_blocked"), who
    assert db.execute("select count(*) from app.reviews").fetchone()[0] == 0
    assert review(db, w.orchestrator, sid).status == 201
    for who, key in (("second key", second), ("dispatch child", child)):
        r = call(db, key, "verify_story", story_id=sid, result="pass")
        assert (r.status, r.code) == (409, "self_verify_blocked"), who
        r = call(db, key, "reject_story", story_id=sid, reason="sabotage")
        assert (r.status, r.code) == (409, "self_verify_blocked"), who
    assert story_row(db, sid)["verified_status"] == "unverified"
    assert db.execute("select count(*) from app.verification_results").fetchone()[0] == 0
    assert violations(db, sid) == [("review_complete", "self_review_blocked")] * 2 + [
        ("verify", "self_verify_blocked"), ("reject", "self_verify_blocked")] * 2
    assert call(db, w.orchestrator, "verify_story", story_id=sid, result="pass").status == 200


def test_parent_of_a_dispatched_implementer_is_the_same_actor(db: psycopg.Connection) -> None:
    """The lineage root works both ways: an orchestrator cannot verify what its own
    dispatched sub-agent implemented."""
    w = make_world(db)
    child = dispatch_child(db, w.tenant_id, w.orchestrator, "agent")
    sid = implementing_story(db, w, "1.1", implementer=child)
    assert call(db, w.reporter, "report_story", story_id=sid).status == 200
    r = review(db, w.orchestrator, sid)
    assert (r.status, r.code) == (409, "self_review_blocked")


def test_bulk_verify_and_verify_all_go_through_the_gate(db: psycopg.Connection) -> None:
    w = make_world(db)
    other = create_agent_key(db, w.tenant_id, "orchestrator", "orchestrator-2")
    # s1, s2 implemented by w.implementer; s3 by the orchestrator's own dispatch child.
    s1, s2 = make_story(db, w, "1.1"), make_story(db, w, "1.2")
    child = dispatch_child(db, w.tenant_id, w.orchestrator, "agent")
    s3 = make_story(db, w, "1.3")
    run_to_reported(db, w, s1)
    run_to_reported(db, w, s2)
    run_to_reported(db, w, s3, implementer=child)
    for sid in (s1, s2, s3):
        assert review(db, other, sid).status == 201
    r = call(db, w.orchestrator, "bulk_verify", story_ids=[s3, s1])
    assert r.status == 200
    by_id = {item["story_id"]: item for item in r.body["results"]}
    assert [i["story_id"] for i in r.body["results"]] == [s3, s1]  # input order
    assert (by_id[s3]["ok"], by_id[s3]["status"], by_id[s3]["error"]["code"]) == (
        False, 409, "self_verify_blocked")
    assert by_id[s1]["ok"] and by_id[s1]["story"]["verified_status"] == "verified"
    assert (r.body["succeeded"], r.body["failed"]) == (1, 1)
    assert violations(db, s3) == [("verify", "self_verify_blocked")]

    r = call(db, w.orchestrator, "verify_all_in_epic", epic_id=w.epic_id)
    assert r.status == 200
    assert {i["story_id"]: (i["ok"], i.get("error", {}).get("code"))
            for i in r.body["results"]} == {s2: (True, None), s3: (False, "self_verify_blocked")}
    assert story_row(db, s3)["verified_status"] == "unverified"
    assert violations(db, s3) == [("verify", "self_verify_blocked")] * 2
    # Another orchestrator may verify it; then the epic is complete, announced once.
    assert call(db, other, "bulk_verify", story_ids=[s3]).body["succeeded"] == 1
    n = db.execute("select count(*) from app.events where event_type = 'epic.completed'"
                   ).fetchone()[0]
    assert n == 1


def test_backfill_of_a_started_story_is_refused_and_recorded(db: psycopg.Connection) -> None:
    w = make_world(db)
    started = implementing_story(db, w, "1.1")
    r = call(db, w.orchestrator, "backfill_story", story_id=started, reason="done elsewhere")
    assert (r.status, r.code) == (409, "backfill_not_allowed")
    assert violations(db, started) == [("backfill", "backfill_not_allowed")]
    # Unclaiming does not launder a story: it was claimed and started once.
    assert call(db, w.implementer, "unclaim_story", story_id=started).status == 200
    r = call(db, w.user, "backfill_story", story_id=started, reason="done elsewhere")
    assert (r.status, r.code) == (409, "backfill_not_allowed")
    assert story_row(db, started)["verified_status"] == "unverified"

    fresh = make_story(db, w, "1.2")
    r = call(db, w.user, "backfill_story", story_id=fresh, reason="shipped before loopctl",
             evidence_url="https://example.com/pr/1")
    assert r.status == 200
    row = story_row(db, fresh)
    assert (row["agent_status"], row["verified_status"], row["backfill_reason"]) == (
        "reported_done", "verified", "shipped before loopctl")
    assert db.execute("select count(*) from app.events where entity_id = %s and "
                      "event_type = 'story.backfilled'", (fresh,)).fetchone()[0] == 1


def test_violations_halt_custody_writes(db: psycopg.Connection) -> None:
    w = make_world(db, settings={"custody_halt_after_violations": 2})
    sid = implementing_story(db, w, "1.1")
    other = make_story(db, w, "1.2")
    for _ in range(2):
        assert call(db, w.implementer, "report_story", story_id=sid).code == "self_report_blocked"
    # Now every custody write is refused, legitimate or not, and nothing changes.
    for key, fn, args in ((w.reporter, "report_story", {"story_id": sid}),
                          (w.implementer, "contract_story",
                           {"story_id": other, "story_title": "Story 1.2", "ac_count": 2})):
        r = call(db, key, fn, **args)
        assert (r.status, r.code) == (409, "custody_halted"), fn
        assert r.details["violations_last_hour"] == 2
    assert story_row(db, sid)["agent_status"] == "implementing"
    assert story_row(db, other)["agent_status"] == "pending"
    # Violations older than an hour no longer count.
    db.execute("update app.custody_violations set created_at = now() - interval '61 minutes'")
    assert call(db, w.reporter, "report_story", story_id=sid).status == 200


def test_without_halt_policy_violations_do_not_block(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = implementing_story(db, w, "1.1")
    for _ in range(5):
        assert call(db, w.implementer, "report_story", story_id=sid).status == 409
    assert call(db, w.reporter, "report_story", story_id=sid).status == 200


def test_callers_without_agent_identity_cannot_report_or_verify(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = implementing_story(db, w, "1.1")
    bare_orchestrator = create_agent_key(db, w.tenant_id, "orchestrator")
    r = call(db, bare_orchestrator, "report_story", story_id=sid)
    assert (r.status, r.code) == (403, "agent_identity_required")
    assert call(db, w.reporter, "report_story", story_id=sid).status == 200
    assert review(db, w.user, sid).status == 201
    r = call(db, bare_orchestrator, "verify_story", story_id=sid, result="pass")
    assert (r.status, r.code) == (403, "agent_identity_required")
    r = call(db, bare_orchestrator, "bulk_verify", story_ids=[sid])
    assert (r.status, r.code) == (403, "agent_identity_required")


@pytest.mark.parametrize("sql", [
    "update app.stories set verified_status = 'verified'",
    "insert into app.reviews (tenant_id, story_id, reviewer_key_id, review_type) "
    "select tenant_id, id, gen_random_uuid(), 'x' from app.stories",
    "insert into app.custody_violations (tenant_id, action, code) values "
    "(gen_random_uuid(), 'x', 'y')",
    "delete from app.custody_violations",
    "select app.sm_verify(app.current_identity(), gen_random_uuid(), 'pass', null, null)",
    "select app.custody_gate(null::app.stories, null::app.identity, 'verify')",
])
def test_direct_sql_as_an_api_role_is_refused(db: psycopg.Connection, sql: str) -> None:
    w = make_world(db)
    make_story(db, w, "1.1")
    for key in (w.implementer, w.orchestrator, w.user):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, key) as c:
            c.execute(sql)


def test_anonymous_and_forged_callers(db: psycopg.Connection) -> None:
    w = make_world(db)
    sid = implementing_story(db, w, "1.1")
    # No privilege at all for the anonymous role.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_api_role(db, "loopctl_anon"):
        db.execute("select api.verify_story(%s, 'pass')", (sid,))
    # An agent key presented under the orchestrator role identifies nobody: 401.
    with pytest.raises(psycopg.Error) as exc, \
            as_api_role(db, "loopctl_orchestrator", w.implementer.claims):
        db.execute("select api.report_story(%s)", (sid,))
    assert exc.value.diag.sqlstate == "PGRST" and '"status": 401' in exc.value.diag.message_detail


def test_bulk_paths_are_halted_too(db: psycopg.Connection) -> None:
    w = make_world(db, settings={"custody_halt_after_violations": 1})
    s1, s2 = make_story(db, w, "1.1"), make_story(db, w, "1.2")
    run_to_reported(db, w, s1)
    run_to_reported(db, w, s2)
    assert review(db, w.user, s1).status == review(db, w.user, s2).status == 201
    impl_as_orchestrator = new_key_for_agent(db, w.tenant_id, w.implementer.agent_id,
                                             "orchestrator")
    # The first item is a violation (recorded); from then on the tenant is halted.
    r = call(db, impl_as_orchestrator, "bulk_verify", story_ids=[s1, s2])
    codes = sorted(i["error"]["code"] for i in r.body["results"])
    assert codes == ["custody_halted", "self_verify_blocked"]
    r = call(db, w.orchestrator, "verify_all_in_epic", epic_id=w.epic_id)
    assert [i["error"]["code"] for i in r.body["results"]] == ["custody_halted"] * 2
    assert db.execute("select count(*) from app.custody_violations").fetchone()[0] == 1
    assert {story_row(db, s)["verified_status"] for s in (s1, s2)} == {"unverified"}
