"""Skills with versions and cost performance per version (regression at >= 2x with >= 3 uses)."""

from __future__ import annotations

from typing import Any

import psycopg
from cost_support import call, expect_error, make_work, report, written_rows

from loopctl.testing import create_agent_key, create_tenant


def test_cost_performance_flags_a_regression(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    orch = create_agent_key(db, t.id, "orchestrator", "orch-1")
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id, stories_per_epic=9)
    stories = work.stories[work.epics[0]]
    skill = call(db, orch, "create_skill", name="implement-story", description="prompt")
    versions = [call(db, orch, "create_skill_version", skill_id=skill["id"],
                     prompt_text=f"prompt v{i}", changelog=f"change {i}") for i in (1, 2, 3, 4)]
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    # v1: 3 uses averaging 100; v2: 3 uses averaging 250 (2.5x: regression);
    # v3: 2 uses averaging 600 (too few uses to flag); v4: 3 uses averaging 1000 vs 600 (1.67x).
    plan = {0: [90, 100, 110], 1: [200, 250, 300], 2: [500, 700], 3: [900, 1000, 1100]}
    for v, costs in plan.items():
        for i, cost in enumerate(costs):
            report(db, agent, stories[(v * 2 + i) % len(stories)], cost=cost,
                   skill_version_id=versions[v]["id"])
    # An unrelated report without a skill does not count.
    report(db, agent, stories[0], cost=99999)
    db.execute("update app.stories set verified_status = 'verified' where id = any(%s::uuid[])",
               (stories[0:2],))
    db.execute("update app.stories set verified_status = 'rejected' where id = %s", (stories[2],))

    perf = call(db, agent, "skill_cost_performance", skill_id=skill["id"])
    rows = {v["version"]: v for v in perf["versions"]}
    assert [rows[v]["invocations"] for v in (1, 2, 3, 4)] == [3, 3, 2, 3]
    assert [rows[v]["total_cost_millicents"] for v in (1, 2, 3, 4)] == [300, 750, 1200, 3000]
    assert [float(rows[v]["avg_cost_millicents"]) for v in (1, 2, 3, 4)] == [100, 250, 600, 1000]
    assert [rows[v]["cost_regression"] for v in (1, 2, 3, 4)] == [False, True, False, False]
    assert rows[1]["avg_cost_change_pct"] is None
    assert float(rows[2]["avg_cost_change_pct"]) == 150.0
    # v1 ran on stories 0, 1, 2: two verified, one rejected.
    assert (rows[1]["verified_stories"], rows[1]["rejected_stories"]) == (2, 1)


def test_skill_validation_and_tenancy(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    other = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    skill = call(db, t.user_key, "create_skill", name="review")
    assert expect_error(db, t.user_key, "create_skill", name="review")[0] == 409
    assert expect_error(db, t.user_key, "create_skill", name="")[0] == 422
    assert expect_error(db, t.user_key, "create_skill_version", skill_id=skill["id"],
                        prompt_text="")[0] == 422
    assert expect_error(db, other.user_key, "create_skill_version", skill_id=skill["id"],
                        prompt_text="x")[0] == 404
    assert expect_error(db, other.user_key, "skill_cost_performance",
                        skill_id=skill["id"])[0] == 404
    # A usage report naming another tenant's skill version: 404, nothing written.
    theirs = call(db, other.user_key, "create_skill", name="review")
    their_version = call(db, other.user_key, "create_skill_version", skill_id=theirs["id"],
                         prompt_text="x")
    work = make_work(db, t.id)
    before = written_rows(db)
    status, body = expect_error(db, agent, "report_token_usage",
                                story_id=work.stories[work.epics[0]][0], input_tokens=1,
                                output_tokens=1, model_name="m", cost_millicents=1,
                                skill_version_id=their_version["id"])
    assert (status, body["code"]) == (404, "skill_version_not_found")
    assert written_rows(db) == before
    assert [s["name"] for s in call(db, agent, "list_skills")] == ["review"]
