"""Cost intelligence over real HTTP (/api/v1 routes declared in loopctl/routes/cost.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cost_support import Work, make_work
from gateway_helpers import Client, error_code, serve

from loopctl.testing import Key, ServerProcess, Tenant, create_agent_key, create_tenant


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    with serve(module_db) as s:
        yield s


@pytest.fixture(scope="module")
def world(module_db: str) -> tuple[Tenant, Key, Key, Work, Work]:
    with psycopg.connect(module_db, autocommit=True) as admin:
        t = create_tenant(admin)
        agent = create_agent_key(admin, t.id, "agent", "worker-1")
        orch = create_agent_key(admin, t.id, "orchestrator", "orch-1")
        blocked = make_work(admin, t.id)
        free = make_work(admin, t.id)
    return t, agent, orch, blocked, free


def usage(story: str, **over: Any) -> dict[str, Any]:
    return {"story_id": story, "input_tokens": 1000, "output_tokens": 200,
            "model_name": "sonnet", "cost_millicents": 300} | over


def test_usage_budget_block_and_analytics_over_http(
    server: ServerProcess, world: tuple[Tenant, Key, Key, Work, Work], module_db: str
) -> None:
    t, agent, orch, blocked, free = world
    a, o, u = (Client(server.base_url, k) for k in (agent, orch, t.user_key))
    b_story = blocked.stories[blocked.epics[0]][0]
    f_story = free.stories[free.epics[0]][0]

    r = a.post("/api/v1/token-usage", usage(b_story))
    assert r.status_code == 201, r.text
    report = r.json()["data"]
    assert report["agent_id"] == agent.agent_id and report["total_tokens"] == 1200

    # Bad input: 4xx with a clear code, never 500.
    for body, status in ((usage(b_story, input_tokens=-1), 422),
                         (usage(str(uuid.uuid4())), 404),
                         (usage(b_story, metadata={"x": "y" * 40000}), 422),
                         (usage(b_story, agent_id=str(uuid.uuid4())), 422)):
        r = a.post("/api/v1/token-usage", body)
        assert r.status_code == status, (body, r.text)
        assert "error" in r.json()

    r = o.post("/api/v1/budgets", {"scope_type": "project", "scope_id": blocked.project_id,
                                   "limit_millicents": 300, "mode": "block"})
    assert r.status_code == 201, r.text
    budget = r.json()["data"]
    assert budget["pct_used"] == 100
    r = a.post("/api/v1/token-usage", usage(b_story))
    assert r.status_code == 402, r.text
    assert error_code(r) == "budget_exceeded"
    assert budget["id"] in r.json()["error"]["message"]
    assert a.post("/api/v1/token-usage", usage(f_story)).status_code == 201

    r = u.get(f"/api/v1/stories/{b_story}/token-usage")
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["data"]] == [report["id"]]
    assert r.json()["meta"]["totals"]["cost_millicents"] == 300

    r = a.post(f"/api/v1/token-usage/{report['id']}/correct", {"cost_millicents": 100})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["corrects_id"] == report["id"]
    assert a.call("DELETE", f"/api/v1/token-usage/{report['id']}").status_code in (403, 409)

    r = u.get("/api/v1/analytics/agents")
    assert r.status_code == 200, r.text
    [row] = r.json()["data"]
    assert row == {"agent": "worker-1", "tokens": 2400, "stories": 2,
                   "tokens_per_story": 1200, "dominant_model": "sonnet", "budget_pct": None}
    for view in ("models", "projects", "epics", "daily"):
        r = u.get(f"/api/v1/analytics/{view}", params={"limit": 10})
        assert r.status_code == 200, (view, r.text)
        assert r.json()["data"]
    r = u.get("/api/v1/budgets")
    assert [b["id"] for b in r.json()["data"]] == [budget["id"]]
    r = a.get("/api/v1/cost/anomalies", params={"resolved": "false"})
    assert r.status_code == 200 and r.json()["data"] == []


def test_skills_over_http(server: ServerProcess,
                          world: tuple[Tenant, Key, Key, Work, Work]) -> None:
    t, agent, orch, _, free = world
    o, a = Client(server.base_url, orch), Client(server.base_url, agent)
    r = o.post("/api/v1/skills", {"name": f"skill-{uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    skill = r.json()["data"]
    r = o.post(f"/api/v1/skills/{skill['id']}/versions", {"prompt_text": "do it"})
    assert r.status_code == 201, r.text
    version = r.json()["data"]
    r = a.post("/api/v1/token-usage", usage(free.stories[free.epics[0]][1],
                                            skill_version_id=version["id"]))
    assert r.status_code == 201, r.text
    r = a.get(f"/api/v1/skills/{skill['id']}/cost-performance")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["versions"][0]["invocations"] == 1
    assert a.get(f"/api/v1/skills/{uuid.uuid4()}/cost-performance").status_code == 404


def test_cost_routes_are_discoverable(server: ServerProcess) -> None:
    spec = Client(server.base_url).get("/api/v1/openapi.json")
    assert spec.status_code == 200, spec.text
    paths = spec.json()["paths"]
    for p in ("/api/v1/token-usage", "/api/v1/stories/{id}/token-usage", "/api/v1/budgets",
              "/api/v1/cost/anomalies", "/api/v1/analytics/agents",
              "/api/v1/skills/{id}/cost-performance"):
        assert p in paths, p
