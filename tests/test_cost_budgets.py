"""Budgets: inheritance, exactly-once threshold events under concurrency, block mode (402)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from cost_support import call, error_of, expect_error, make_work, report, scalar, written_rows

from loopctl.testing import as_key, create_agent_key, create_tenant


def events(db: psycopg.Connection[Any], event_type: str) -> list[dict[str, Any]]:
    return [r[0] for r in db.execute(
        "select payload from app.events where event_type = %s order by id", (event_type,))]


def test_threshold_and_exceeded_fire_once_under_20_concurrent_reports(
    db: psycopg.Connection[Any], fresh_db: str
) -> None:
    t = create_tenant(db)
    orch = create_agent_key(db, t.id, "orchestrator", "orch-1")
    agents = [create_agent_key(db, t.id, "agent", f"worker-{i}") for i in range(4)]
    work = make_work(db, t.id, epics=2, stories_per_epic=3)
    stories = [s for e in work.epics for s in work.stories[e]]
    budget = call(db, orch, "set_token_budget", scope_type="project", scope_id=work.project_id,
                  limit_millicents=2000, alert_threshold_pct=80, mode="warn")
    # One agent budget in tokens too: 20 reports x 150 tokens = 3000 of 2500.
    agent_budget = call(db, orch, "set_token_budget", scope_type="agent",
                        scope_id=agents[0].agent_id, limit_tokens=2500)

    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                key = agents[0] if i % 2 == 0 else agents[1 + i % 3]
                barrier.wait(timeout=30)
                report(conn, key, stories[i % len(stories)], input_tokens=100,
                       output_tokens=50, cost=100, commit=True)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors

    assert scalar(db, "select cost_millicents from app.cost_totals where scope_type = 'project'") \
        == 2000
    warnings = [e for e in events(db, "token.budget_warning") if e["budget_id"] == budget["id"]]
    exceeded = [e for e in events(db, "token.budget_exceeded") if e["budget_id"] == budget["id"]]
    assert len(warnings) == 1 and len(exceeded) == 1
    assert 80 <= warnings[0]["pct_used"] < 100 + 1e-9
    assert exceeded[0]["pct_used"] == 100
    # Agent 0 made 10 reports of 150 tokens = 1500 of 2500 (60 %): nothing fired for it.
    assert not [e for e in events(db, "token.budget_warning")
                if e["budget_id"] == agent_budget["id"]]


def test_block_mode_refuses_reports_and_claims_in_scope_only(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    spender = create_agent_key(db, t.id, "agent", "worker-2")
    blocked = make_work(db, t.id)
    free = make_work(db, t.id)
    b_story = blocked.stories[blocked.epics[0]][0]
    b_other_story = blocked.stories[blocked.epics[0]][1]
    f_story = free.stories[free.epics[0]][0]
    budget = call(db, t.user_key, "set_token_budget", scope_type="project",
                  scope_id=blocked.project_id, limit_millicents=1000, mode="block")

    first = report(db, agent, b_story, cost=1000)  # reaches 100 %: accepted, then blocks
    assert {"budget_id": budget["id"], "level": "exceeded"} in first["budget_events"]
    before = written_rows(db)
    status, body = expect_error(db, agent, "report_token_usage", story_id=b_other_story,
                                input_tokens=1, output_tokens=1, model_name="sonnet",
                                cost_millicents=1)
    assert (status, body["code"]) == (402, "budget_exceeded")
    assert budget["id"] in body["message"] and "project" in body["message"]
    assert body["details"]["budget_id"] == budget["id"]
    assert written_rows(db) == before  # refused: nothing written

    # Claims in scope are refused by api.claim_story (which asks app.assert_budget_allows);
    # outside the scope they go through.
    db.execute("update app.stories set agent_status = 'contracted' where id in (%s, %s)",
               (b_other_story, f_story))

    def assert_claim(story: str) -> None:
        call(db, spender, "claim_story", commit=False, story_id=story)

    with pytest.raises(psycopg.Error) as info:
        assert_claim(b_other_story)
    assert error_of(info.value)[0] == 402
    assert_claim(f_story)
    report(db, agent, f_story, cost=5000)  # another project: unaffected

    # Raising the limit lifts the block; warn mode never blocks.
    call(db, t.user_key, "set_token_budget", scope_type="project", scope_id=blocked.project_id,
         limit_millicents=1000, mode="warn")
    report(db, agent, b_other_story, cost=1)
    assert_claim(b_other_story)
    assert scalar(db, "select count(*) from app.stories where agent_status = 'assigned'") == 0


def test_agent_budget_blocks_that_agent_only(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    greedy = create_agent_key(db, t.id, "agent", "greedy")
    modest = create_agent_key(db, t.id, "agent", "modest")
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]
    call(db, t.user_key, "set_token_budget", scope_type="agent", scope_id=greedy.agent_id,
         limit_tokens=1000, mode="block")
    report(db, greedy, story, input_tokens=900, output_tokens=200)
    status, body = expect_error(db, greedy, "report_token_usage", story_id=story,
                                input_tokens=1, output_tokens=1, model_name="m",
                                cost_millicents=1)
    assert (status, body["code"]) == (402, "budget_exceeded")
    assert body["details"]["scope_type"] == "agent"
    report(db, modest, story, input_tokens=900, output_tokens=200)


def test_inheritance_story_epic_project_tenant_default(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db, settings={"default_budget_millicents": 500,
                                    "budget_alert_threshold_pct": 50})
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id)
    epic = work.epics[0]
    story = work.stories[epic][0]

    def governing() -> dict[str, Any]:
        return call(db, agent, "story_token_usage", story_id=story)["budget"]

    assert governing()["budget_id"] == f"default:project:{work.project_id}"
    assert governing()["threshold_pct"] == 50
    out = report(db, agent, story, cost=300)  # 60 % of the tenant default: warning at 50 %
    assert out["budget_events"] == [
        {"budget_id": f"default:project:{work.project_id}", "level": "warning"}]
    report(db, agent, story, cost=300)  # 120 %: exceeded, warning not again
    assert len(events(db, "token.budget_warning")) == 1
    assert len(events(db, "token.budget_exceeded")) == 1
    # The tenant default only warns: nothing was refused.

    for scope_type, scope_id in (("project", work.project_id), ("epic", epic), ("story", story)):
        b = call(db, t.user_key, "set_token_budget", scope_type=scope_type, scope_id=scope_id,
                 limit_tokens=10**6)
        got = governing()
        assert (got["inherited_from"], got["budget_id"]) == (scope_type, b["id"])
        assert got["threshold_pct"] == 50  # the tenant setting, no explicit threshold


def test_budget_api_validation_and_tenancy(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    other = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    mine = make_work(db, t.id)
    theirs = make_work(db, other.id)
    ok = {"scope_type": "project", "scope_id": mine.project_id, "limit_millicents": 10}
    cases: list[tuple[dict[str, Any], int]] = [
        ({**ok, "scope_id": theirs.project_id}, 404),
        ({**ok, "scope_type": "galaxy"}, 422),
        ({**ok, "limit_millicents": None}, 422),
        ({**ok, "limit_millicents": -5}, 422),
        ({**ok, "alert_threshold_pct": 150}, 422),
        ({**ok, "mode": "explode"}, 422),
    ]
    for args, status in cases:
        assert expect_error(db, t.user_key, "set_token_budget", **args)[0] == status, args
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, agent) as c:
        c.execute("select api.set_token_budget('project', %s, 10)", (mine.project_id,))
    b = call(db, t.user_key, "set_token_budget", **ok)
    assert [x["id"] for x in call(db, agent, "list_budgets")] == [b["id"]]
    assert call(db, other.user_key, "list_budgets") == []
    assert expect_error(db, other.user_key, "delete_budget", budget_id=b["id"])[0] == 404
    assert call(db, t.user_key, "delete_budget", budget_id=b["id"])["deleted"] is True
    assert call(db, agent, "list_budgets") == []


def test_raising_a_limit_rearms_its_events(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]
    args = {"scope_type": "story", "scope_id": story}
    call(db, t.user_key, "set_token_budget", **args, limit_millicents=100)
    report(db, agent, story, cost=100)
    b = call(db, t.user_key, "set_token_budget", **args, limit_millicents=1000)
    assert b["fired"] == [] and b["pct_used"] == 10
    report(db, agent, story, cost=900)
    assert len(events(db, "token.budget_exceeded")) == 2


def test_block_mode_holds_under_20_concurrent_reports(
    db: psycopg.Connection[Any], fresh_db: str
) -> None:
    """No race lets spending run past a blocking budget: with 100 per report and a limit of
    1,000, exactly 10 of 20 concurrent reports are accepted, the other 10 get 402."""
    t = create_tenant(db)
    agents = [create_agent_key(db, t.id, "agent", f"worker-{i}") for i in range(4)]
    work = make_work(db, t.id, stories_per_epic=4)
    stories = work.stories[work.epics[0]]
    call(db, t.user_key, "set_token_budget", scope_type="epic", scope_id=work.epics[0],
         limit_millicents=1000, mode="block")
    barrier = threading.Barrier(20)
    outcomes: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            barrier.wait(timeout=30)
            try:
                report(conn, agents[i % 4], stories[i % 4], cost=100, commit=True)
                status = 201
            except psycopg.Error as exc:
                status = error_of(exc)[0]
            with lock:
                outcomes.append(status)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sorted(outcomes) == [201] * 10 + [402] * 10
    assert scalar(db, "select sum(cost_millicents) from app.token_usage_reports") == 1000
    assert len(events(db, "token.budget_exceeded")) == 1
