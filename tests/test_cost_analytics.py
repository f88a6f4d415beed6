"""Analytics views against figures computed independently in Python, tenant-limited for API
keys and for an analyst login."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from cost_support import call, make_work, report

from loopctl.testing import Key, as_key, create_agent_key, create_tenant

# The product page's table: agent, tokens, stories, tok/story, model, budget%.
PRODUCT_TABLE = [
    ("worker-3", 142880, 8, 17860, "sonnet", 43),
    ("worker-1", 219450, 9, 24383, "sonnet", 66),
    ("worker-2", 381200, 11, 34654, "opus", 91),
    ("worker-4", 512000, 7, 73142, "opus", 102),
]
# Token budgets that give the page's percentages.
AGENT_TOKEN_BUDGETS = {"worker-3": 330000, "worker-1": 332500, "worker-2": 418900,
                       "worker-4": 500000}
SECONDARY_MODEL = {"sonnet": "haiku", "opus": "sonnet"}


@dataclass
class Usage:
    id: str
    agent: str
    story: str
    epic: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: int


def build_dataset(db: psycopg.Connection[Any]) -> tuple[Any, dict[str, Key], Any,
                                                       dict[str, Usage]]:
    """Reports reproducing the product table, plus a correction, deleted reports and an agent
    whose only report is deleted. Returns the effective usage the views must reflect."""
    t = create_tenant(db)
    keys = {name: create_agent_key(db, t.id, "agent", name)
            for name in [*AGENT_TOKEN_BUDGETS, "worker-5"]}
    work = make_work(db, t.id, epics=5, stories_per_epic=8)
    slots = [(e, s) for e in work.epics for s in work.stories[e]]
    effective: dict[str, Usage] = {}

    def add(name: str, epic: str, story: str, model: str, tokens: int) -> Usage:
        inp = tokens * 3 // 4
        out = report(db, keys[name], story, input_tokens=inp, output_tokens=tokens - inp,
                     model=model, cost=tokens // 10)
        u = Usage(out["id"], name, story, epic, model, inp, tokens - inp, tokens // 10)
        effective[u.id] = u
        return u

    for name, total, n_stories, _, model, _ in PRODUCT_TABLE:
        mine, slots = slots[:n_stories], slots[n_stories:]
        per_story = [total // n_stories + (1 if i < total % n_stories else 0)
                     for i in range(n_stories)]
        for (epic, story), tokens in zip(mine, per_story, strict=True):
            main = tokens * 7 // 10
            add(name, epic, story, model, main)
            add(name, epic, story, SECONDARY_MODEL[model], tokens - main)
        call(db, t.user_key, "set_token_budget", scope_type="agent",
             scope_id=keys[name].agent_id, limit_tokens=AGENT_TOKEN_BUDGETS[name])

    # worker-3 over-reported one story by 50,000 tokens, then corrected it.
    (epic3, story3) = next((u.epic, u.story) for u in effective.values() if u.agent == "worker-3")
    wrong = add("worker-3", epic3, story3, "opus", 50000)
    fixed = call(db, keys["worker-3"], "correct_token_usage", report_id=wrong.id,
                 input_tokens=0, output_tokens=0, cost_millicents=0)
    del effective[wrong.id]
    effective[fixed["id"]] = Usage(fixed["id"], "worker-3", story3, epic3, "opus", 0, 0, 0)
    # A duplicate of worker-1 and the only report of worker-5 are deleted by a user.
    for name in ("worker-1", "worker-5"):
        dup = add(name, epic3, story3, "opus", 99999)
        call(db, t.user_key, "delete_token_usage", report_id=dup.id)
        del effective[dup.id]
    return t, keys, work, effective


def expected_ranking(effective: dict[str, Usage]) -> list[tuple[Any, ...]]:
    tokens: dict[str, int] = defaultdict(int)
    stories: dict[str, set[str]] = defaultdict(set)
    by_model: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for u in effective.values():
        tokens[u.agent] += u.input_tokens + u.output_tokens
        stories[u.agent].add(u.story)
        by_model[u.agent][u.model] += u.input_tokens + u.output_tokens
    rows = []
    for agent in tokens:
        dominant = sorted(by_model[agent].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        budget = AGENT_TOKEN_BUDGETS.get(agent)
        pct = tokens[agent] * 100 // budget if budget else None
        rows.append((agent, tokens[agent], len(stories[agent]),
                     tokens[agent] // len(stories[agent]), dominant, pct))
    return sorted(rows, key=lambda r: (r[3], r[0]))


RANKING_SQL = ("select agent, tokens, stories, tokens_per_story, dominant_model, budget_pct "
               "from api.agent_cost_ranking")


def test_ranking_equals_independent_figures_and_the_product_table(
    db: psycopg.Connection[Any],
) -> None:
    t, keys, _, effective = build_dataset(db)
    with as_key(db, keys["worker-2"]) as c:
        rows = c.execute(RANKING_SQL).fetchall()
    assert rows == expected_ranking(effective)
    assert rows == PRODUCT_TABLE  # the correction and the deletions changed nothing visible
    cols = [d.name for d in db.execute("select * from api.agent_cost_ranking limit 0").description]
    assert cols == ["agent", "tokens", "stories", "tokens_per_story", "dominant_model",
                    "budget_pct"]
    # Another tenant sees none of it.
    other = create_tenant(db)
    with as_key(db, other.user_key) as c:
        assert c.execute(RANKING_SQL).fetchall() == []


def test_deleted_reports_leave_the_rankings(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    a = create_agent_key(db, t.id, "agent", "alpha")
    b = create_agent_key(db, t.id, "agent", "beta")
    work = make_work(db, t.id)
    s1, s2, _ = work.stories[work.epics[0]]
    report(db, a, s1, input_tokens=100, output_tokens=0)
    r_b = report(db, b, s1, input_tokens=500, output_tokens=0)
    r_b2 = report(db, b, s2, input_tokens=700, output_tokens=0, model="opus")
    with as_key(db, t.user_key) as c:
        assert [r[:3] for r in c.execute(RANKING_SQL)] == [("alpha", 100, 1),
                                                           ("beta", 1200, 2)]
    call(db, t.user_key, "delete_token_usage", report_id=r_b2["id"])
    with as_key(db, t.user_key) as c:
        assert [r[:5] for r in c.execute(RANKING_SQL)] == [
            ("alpha", 100, 1, 100, "sonnet"), ("beta", 500, 1, 500, "sonnet")]
    call(db, t.user_key, "delete_token_usage", report_id=r_b["id"])
    with as_key(db, t.user_key) as c:
        assert [r[0] for r in c.execute(RANKING_SQL)] == ["alpha"]


def test_model_mix_epic_project_daily_views(db: psycopg.Connection[Any]) -> None:
    t, keys, work, effective = build_dataset(db)
    models: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    epics: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for u in effective.values():
        tok = u.input_tokens + u.output_tokens
        models[u.model][0] += 1
        models[u.model][1] += tok
        models[u.model][2] += u.cost
        epics[u.epic][0] += tok
        epics[u.epic][1] += u.cost
    total = sum(m[1] for m in models.values())
    with as_key(db, t.user_key) as c:
        mix = c.execute("select model_name, reports, tokens, cost_millicents, "
                        "token_share_pct::float from api.model_mix").fetchall()
        by_epic = c.execute("select epic_id::text, tokens, cost_millicents "
                            "from api.cost_by_epic").fetchall()
        by_project = c.execute("select project_id::text, tokens, cost_millicents, "
                               "stories from api.cost_by_project").fetchall()
        daily = c.execute("select tokens, cost_millicents, reports from api.cost_daily").fetchall()
    assert sorted(mix) == sorted((m, v[0], v[1], v[2], round(100 * v[1] / total, 2))
                                 for m, v in models.items())
    assert sorted(by_epic) == sorted((e, epics[e][0], epics[e][1]) for e in work.epics)
    assert by_project == [(work.project_id, total, sum(m[2] for m in models.values()),
                           len({u.story for u in effective.values()}))]
    assert daily == [(total, sum(m[2] for m in models.values()), len(effective))]


def test_analyst_login_sees_its_tenant_through_the_views_only(
    db: psycopg.Connection[Any], fresh_db: str
) -> None:
    t, _, _, effective = build_dataset(db)
    other = create_tenant(db)
    other_agent = create_agent_key(db, other.id, "agent", "intruder")
    other_work = make_work(db, other.id)
    report(db, other_agent, other_work.stories[other_work.epics[0]][0], cost=5)
    role = f"analyst_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    db.execute("select app.create_analyst_role(%s, %s, %s)", (t.slug, role, password))
    parts = urlsplit(fresh_db)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port}"
    try:
        with psycopg.connect(urlunsplit((parts.scheme, netloc, parts.path, "", "")),
                             autocommit=True) as analyst:
            # Request claims an analyst sets are ignored: the login role decides the tenant.
            analyst.execute("select set_config('request.jwt.claims', %s, false)",
                            ('{"key_hash": "' + "0" * 64 + '"}',))
            assert analyst.execute(RANKING_SQL).fetchall() == expected_ranking(effective)
            names = [r[0] for r in analyst.execute("select model_name from api.model_mix")]
            assert names and all(isinstance(n, str) for n in names)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                analyst.execute("select * from app.token_usage_reports")
    finally:
        db.execute(f'drop role if exists "{role}"')


def test_analytics_functions_page_the_views(db: psycopg.Connection[Any]) -> None:
    t, keys, work, effective = build_dataset(db)
    agent = keys["worker-1"]
    ranking = call(db, agent, "analytics_agents")
    assert [tuple(r[c] for c in ("agent", "tokens", "stories", "tokens_per_story",
                                 "dominant_model", "budget_pct")) for r in ranking] \
        == PRODUCT_TABLE
    assert [r["agent"] for r in call(db, agent, "analytics_agents", limit=2, offset=1)] \
        == ["worker-1", "worker-2"]
    assert len(call(db, agent, "analytics_epics", project_id=work.project_id)) == 5
    assert call(db, agent, "analytics_epics", project_id=str(uuid.uuid4())) == []
    [day] = call(db, agent, "analytics_daily", project_id=work.project_id)
    assert call(db, agent, "analytics_daily") == [day]
    assert day["reports"] == len(effective)
    assert call(db, agent, "analytics_daily", since="2999-01-01") == []
    assert {m["model_name"] for m in call(db, agent, "analytics_models")} \
        == {u.model for u in effective.values()}
    assert call(db, agent, "analytics_projects")[0]["project_id"] == work.project_id
    with pytest.raises(psycopg.Error) as info, as_key(db, agent) as c:
        c.execute('select api.analytics_agents("limit" => 0)')
    assert info.value.sqlstate == "PGRST"
    other = create_tenant(db)
    assert call(db, other.user_key, "analytics_agents") == []
    story = next(iter(effective.values())).story
    listed = call(db, agent, "list_story_token_usage", story_id=story)
    assert {r["id"] for r in listed["data"]} == {u.id for u in effective.values()
                                                 if u.story == story}
    assert listed["meta"]["totals"]["reports"] == len(listed["data"])
