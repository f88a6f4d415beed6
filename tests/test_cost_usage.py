"""Token usage reports: validation, agent from the key, corrections, soft deletes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from cost_support import (
    call,
    error_of,
    expect_error,
    make_work,
    report,
    scalar,
    written_rows,
)

from loopctl.testing import as_key, create_agent_key, create_tenant


def test_report_records_agent_from_key_and_totals(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]
    out = report(db, agent, story, input_tokens=1200, output_tokens=300, cost=450,
                 phase="implement", tool_call_count=7)
    assert out["agent_id"] == agent.agent_id
    assert out["total_tokens"] == 1500
    usage = call(db, agent, "story_token_usage", story_id=story)
    assert usage["totals"] == {"reports": 1, "input_tokens": 1200, "output_tokens": 300,
                               "total_tokens": 1500, "cost_millicents": 450}
    row = db.execute("select agent_id::text, key_id::text, phase, tool_call_count "
                     "from app.token_usage_reports").fetchone()
    assert row == (agent.agent_id, agent.id, "implement", 7)
    # The report is in the audit trail; the derived running totals are not.
    audited = {r[0] for r in db.execute("select distinct entity_type from audit.entries")}
    assert "token_usage_report" in audited
    assert not audited & {"cost_total", "budget_alert"}


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("negative input tokens", {"input_tokens": -1}, 422, "invalid_token_usage"),
    ("negative output tokens", {"output_tokens": -5}, 422, "invalid_token_usage"),
    ("negative cost", {"cost_millicents": -100}, 422, "invalid_token_usage"),
    ("absurd tokens", {"input_tokens": 10**12}, 422, "invalid_token_usage"),
    ("absurd cost", {"cost_millicents": 10**15}, 422, "invalid_token_usage"),
    ("absurd tool calls", {"tool_call_count": 10**8}, 422, "invalid_token_usage"),
    ("empty model", {"model_name": ""}, 422, "invalid_token_usage"),
    ("model with spaces", {"model_name": "drop table; --"}, 422, "invalid_token_usage"),
    ("missing model", {"model_name": None}, 422, "invalid_token_usage"),
    ("huge metadata", {"metadata": {"blob": "x" * 50000}}, 422, "token_usage_too_large"),
    ("metadata not an object", {"metadata": [1, 2]}, 422, "invalid_token_usage"),
    ("unknown skill version", {"skill_version_id": str(uuid.uuid4())}, 404,
     "skill_version_not_found"),
]


@pytest.mark.parametrize(("case", "override", "status", "code"), BAD_INPUTS,
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_and_writes_nothing(
    db: psycopg.Connection[Any], case: str, override: dict[str, Any], status: int, code: str
) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id)
    before = written_rows(db)
    args: dict[str, Any] = {"story_id": work.stories[work.epics[0]][0], "input_tokens": 10,
                            "output_tokens": 10, "model_name": "sonnet", "cost_millicents": 5}
    args.update(override)
    got_status, body = expect_error(db, agent, "report_token_usage", **args)
    assert (got_status, body["code"]) == (status, code), body
    assert written_rows(db) == before


def test_unknown_and_foreign_stories_are_404_and_write_nothing(
    db: psycopg.Connection[Any],
) -> None:
    mine = create_tenant(db)
    other = create_tenant(db)
    agent = create_agent_key(db, mine.id, "agent", "worker-1")
    theirs = make_work(db, other.id)
    foreign_story = theirs.stories[theirs.epics[0]][0]
    before = written_rows(db)
    for story in (str(uuid.uuid4()), foreign_story):
        status, body = expect_error(db, agent, "report_token_usage", story_id=story,
                                    input_tokens=1, output_tokens=1, model_name="sonnet",
                                    cost_millicents=1)
        assert (status, body["code"]) == (404, "story_not_found")
        status, body = expect_error(db, agent, "story_token_usage", story_id=story)
        assert status == 404
    assert written_rows(db) == before


def test_roles_and_identity_gates(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]
    anonymous_agent = create_agent_key(db, t.id, "agent")  # no agent identity
    args = {"story_id": story, "input_tokens": 1, "output_tokens": 1, "model_name": "m",
            "cost_millicents": 1}
    status, body = expect_error(db, anonymous_agent, "report_token_usage", **args)
    assert (status, body["code"]) == (403, "agent_identity_required")
    # A user key cannot even execute the reporting function (no EXECUTE grant).
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, t.user_key) as c:
        c.execute("select api.report_token_usage(%s, 1, 1, 'm', 1)", (story,))
    # Forged claims (a key hash nobody holds) identify nobody: 401.
    forged = create_agent_key(db, t.id, "agent", "w")
    forged.raw = "lc_" + "x" * 40
    status, body = expect_error(db, forged, "report_token_usage", **args)
    assert (status, body["code"]) == (401, "unauthenticated")
    # Direct SQL as an API role cannot reach the tables.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), \
            as_key(db, create_agent_key(db, t.id, "agent", "w2")) as c:
        c.execute("insert into app.token_usage_reports (tenant_id) values (%s)", (t.id,))


def test_record_token_usage_hook_validates_like_the_api(db: psycopg.Connection[Any]) -> None:
    """app.record_token_usage is what api.report_story calls: it records for the caller and
    refuses a payload that names an agent or carries bad numbers."""
    t = create_tenant(db)
    reporter = create_agent_key(db, t.id, "agent", "reviewer-1")
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]

    def hook(usage: dict[str, Any]) -> Any:
        with as_key(db, reporter, commit=True) as c:
            # Runs as the state machine's functions do: the claims stay, the role is not an
            # API role (security definer owner); reset to reach app.* from the test.
            c.execute("reset role")
            return scalar(c, "select app.record_token_usage(%s, %s::jsonb)", story,
                          json.dumps(usage))

    out = hook({"input_tokens": 10, "output_tokens": 20, "model_name": "opus",
                "cost_millicents": 30, "story_id": story})
    assert out["agent_id"] == reporter.agent_id
    before = written_rows(db)
    for bad in ({"input_tokens": -1, "output_tokens": 1, "model_name": "o", "cost_millicents": 1},
                {"input_tokens": 1, "output_tokens": 1, "model_name": "o", "cost_millicents": 1,
                 "agent_id": str(uuid.uuid4())},
                {"input_tokens": 1.5, "output_tokens": 1, "model_name": "o",
                 "cost_millicents": 1},
                {"input_tokens": "12", "output_tokens": 1, "model_name": "o",
                 "cost_millicents": 1}):
        with pytest.raises(psycopg.Error) as info:
            hook(bad)
        assert error_of(info.value)[0] == 422
    assert written_rows(db) == before


def history_rows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("select id, input_tokens, output_tokens, cost_millicents, model_name, "
                      "corrects_id, deleted_at, created_at from app.token_usage_reports "
                      "order by seq").fetchall()


def test_corrections_change_totals_without_editing_history(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    other_agent = create_agent_key(db, t.id, "agent", "worker-2")
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]
    first = report(db, agent, story, input_tokens=1000, output_tokens=500, cost=100)
    second = report(db, agent, story, input_tokens=10, output_tokens=10, cost=7)
    original = history_rows(db)

    status, body = expect_error(db, other_agent, "correct_token_usage", report_id=first["id"],
                                cost_millicents=1)
    assert (status, body["code"]) == (403, "not_report_owner")

    fixed = call(db, t.user_key, "correct_token_usage", report_id=first["id"],
                 input_tokens=3000, cost_millicents=900, reason="double-counted cache")
    assert fixed["corrects_id"] == first["id"]
    assert fixed["agent_id"] == agent.agent_id  # still the agent's usage
    assert fixed["output_tokens"] == 500  # untouched fields carried over
    # History: the original rows are byte-for-byte unchanged, one row was added.
    after = history_rows(db)
    assert after[: len(original)] == original
    assert len(after) == len(original) + 1

    usage = call(db, agent, "story_token_usage", story_id=story)
    assert usage["totals"]["total_tokens"] == 3000 + 500 + 20
    assert usage["totals"]["cost_millicents"] == 900 + 7
    assert usage["totals"]["reports"] == 2
    assert len(usage["history"]) == 3
    project_total = "select cost_millicents from app.cost_totals where scope_type = 'project'"
    assert scalar(db, project_total) == 907

    # Only the latest version can be corrected (chains stay linear).
    status, body = expect_error(db, agent, "correct_token_usage", report_id=first["id"],
                                cost_millicents=5)
    assert (status, body["code"]) == (409, "already_corrected")
    again = call(db, agent, "correct_token_usage", report_id=fixed["id"], cost_millicents=950)
    usage = call(db, agent, "story_token_usage", story_id=story)
    assert usage["totals"]["cost_millicents"] == 950 + 7
    assert {r["id"] for r in usage["reports"]} == {second["id"], again["id"]}


def test_soft_delete_needs_a_user_key_and_leaves_totals(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    orch = create_agent_key(db, t.id, "orchestrator", "orch-1")
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]
    r1 = report(db, agent, story, cost=100)
    report(db, agent, story, cost=40)
    for key in (agent, orch):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, key) as c:
            c.execute("select api.delete_token_usage(%s)", (r1["id"],))
    deleted = call(db, t.user_key, "delete_token_usage", report_id=r1["id"])
    assert deleted["deleted_by_key_id"] == t.user_key.id
    usage = call(db, agent, "story_token_usage", story_id=story)
    assert usage["totals"]["cost_millicents"] == 40
    assert len(usage["history"]) == 2  # the deleted row is still there, marked
    assert scalar(db, "select count(*) from app.token_usage_reports where deleted_at is null") == 1
    status, body = expect_error(db, t.user_key, "delete_token_usage", report_id=r1["id"])
    assert (status, body["code"]) == (409, "token_usage_deleted")
    status, body = expect_error(db, agent, "correct_token_usage", report_id=r1["id"],
                                cost_millicents=1)
    assert (status, body["code"]) == (409, "token_usage_deleted")
    other = create_tenant(db)
    status, _ = expect_error(db, other.user_key, "delete_token_usage", report_id=r1["id"])
    assert status == 404


def test_report_story_records_its_token_usage(db: psycopg.Connection[Any]) -> None:
    """Through the state machine: the usage a completion report carries is recorded for the
    reporting agent, and bad usage rolls the whole report back."""
    t = create_tenant(db)
    implementer = create_agent_key(db, t.id, "agent", "implementer")
    reporter = create_agent_key(db, t.id, "agent", "reporter")
    work = make_work(db, t.id, agent_status="pending")
    story, other = work.stories[work.epics[0]][:2]
    for s in (story, other):
        call(db, implementer, "contract_story", story_id=s,
             story_title=scalar(db, "select title from app.stories where id = %s", s),
             ac_count=0)
        call(db, implementer, "claim_story", story_id=s)
        call(db, implementer, "start_story", story_id=s)
    before = written_rows(db)
    status, _ = expect_error(db, reporter, "report_story", story_id=other,
                             token_usage={"input_tokens": -3, "output_tokens": 1,
                                          "model_name": "opus", "cost_millicents": 1})
    assert status == 422
    assert written_rows(db) == before
    assert scalar(db, "select agent_status from app.stories where id = %s", other) \
        == "implementing"
    call(db, reporter, "report_story", story_id=story,
         token_usage={"input_tokens": 400, "output_tokens": 100, "model_name": "opus",
                      "cost_millicents": 75})
    usage = call(db, reporter, "story_token_usage", story_id=story)
    assert usage["totals"]["total_tokens"] == 500
    assert [r["agent_id"] for r in usage["reports"]] == [reporter.agent_id]
