"""Two tenants over HTTP: every /api/v1 route that takes an id answers 404 for the other
tenant's ids and changes nothing; lists and PostgREST views never show the other's rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from gateway_helpers import Client, serve

from loopctl.routes import all_routes
from loopctl.testing import Key, ServerProcess, create_agent_key, create_tenant

IMPORT = {"epics": [
    {"number": 1, "title": "E1", "stories": [
        {"number": "1.1", "title": "S1", "acceptance_criteria": [{"id": "AC-1",
                                                                  "description": "d"}]},
        {"number": "1.2", "title": "S2", "acceptance_criteria": []}]},
    {"number": 2, "title": "E2", "stories": []}],
    "story_dependencies": [{"story": "1.2", "depends_on": "1.1"}],
    "epic_dependencies": [{"epic": 2, "depends_on": 1}]}


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    with serve(module_db) as s:
        yield s


def make_tenant(server: ServerProcess, admin: psycopg.Connection[Any], name: str
                ) -> dict[str, Any]:
    t = create_tenant(admin)
    keys: dict[str, Key] = {"user": t.user_key,
                            "orchestrator": create_agent_key(admin, t.id, "orchestrator",
                                                             f"{name}-orch"),
                            "agent": create_agent_key(admin, t.id, "agent", f"{name}-impl")}
    owner = Client(server.base_url, t.user_key)
    project = owner.post("/api/v1/projects", json={"name": name, "slug": name}).json()["data"]
    r = owner.post(f"/api/v1/projects/{project['id']}/import", json=IMPORT)
    assert r.status_code == 201, r.text
    stories = owner.get("/api/v1/stories", params={"project_id": project["id"]}).json()["data"]
    story = next(s for s in stories if s["number"] == "1.1")
    other_story = next(s for s in stories if s["number"] == "1.2")
    epic_rows = admin.execute("select number, id::text from app.epics where tenant_id = %s "
                              "order by number", (t.id,)).fetchall()
    epics = dict(epic_rows)
    return {"tenant": t, "keys": keys, "project": project["id"], "story": story["id"],
            "story2": other_story["id"], "epic": epics[1], "epic2": epics[2],
            "agent": keys["agent"].agent_id, "key": keys["agent"].id}


def snapshot(admin: psycopg.Connection[Any], tenant_id: str) -> list[Any]:
    out = []
    for table in ("projects", "epics", "stories", "api_keys", "agents", "story_dependencies",
                  "epic_dependencies", "acceptance_criteria", "artifacts", "reviews"):
        out.append(admin.execute(
            f"select coalesce(jsonb_agg(to_jsonb(t) - 'last_used_at' order by t::text), '[]') "
            f"from app.{table} t where tenant_id = %s", (tenant_id,)).fetchone())
    return out


def test_other_tenants_ids_are_404_on_every_route_and_change_nothing(
        server: ServerProcess, module_db: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        a = make_tenant(server, admin, "alpha")
        b = make_tenant(server, admin, "beta")
        before = snapshot(admin, a["tenant"].id)
        ids = {"projects": a["project"], "stories": a["story"], "epics": a["epic"],
               "agents": a["agent"], "api_keys": a["key"]}
        second = {"stories": a["story2"], "epics": a["epic2"]}
        checked, wrong = 0, []
        for r in all_routes():
            if "{" not in r.path:
                continue
            area = r.path.split("/")[3]
            if area not in ids:  # other areas' routes are tested by their own modules
                continue
            path = r.path.replace("{id}", ids[area])
            path = re.sub(r"\{depends_on\}", second.get(area, ids[area]), path)
            path = path.replace("{ac_id}", "AC-1")
            path = re.sub(r"\{[a-z_]+\}", ids[area], path)
            body = r.request_example if r.takes_body else None
            if isinstance(body, dict):  # point body ids at tenant A as well
                body = {k: (a["story"] if k.endswith("story_id") else
                            a["epic"] if k.endswith("epic_id") else v)
                        for k, v in body.items()}
            found = False
            for role in ("user", "orchestrator", "agent"):
                resp = Client(server.base_url, b["keys"][role]).call(r.method, path, json=body)
                checked += 1
                found = found or resp.status_code == 404
                # A refusal by role alone (before any lookup) reveals nothing about the id.
                if resp.status_code == 403 and resp.json()["error"]["code"] in (
                        "insufficient_role", "agent_identity_required"):
                    continue
                if resp.status_code != 404:
                    wrong.append(f"{r.method} {path} as {role}: {resp.status_code} "
                                 f"{resp.text[:160]}")
            if not found:
                wrong.append(f"{r.method} {r.path}: no role reached the 404")
        assert checked > 40
        assert not wrong, "\n".join(wrong)
        assert snapshot(admin, a["tenant"].id) == before


def test_lists_and_views_never_show_the_other_tenant(server: ServerProcess,
                                                     module_db: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        a = make_tenant(server, admin, "gamma")
        b = make_tenant(server, admin, "delta")
    foreign = {a["project"], a["story"], a["story2"], a["epic"], a["agent"], a["key"],
               a["tenant"].id}
    reads = [r for r in all_routes() if r.method == "GET" and "{" not in r.path]
    seen = 0
    for r in reads:
        for role in r.roles or ("user",):
            resp = Client(server.base_url, b["keys"][role]).get(r.path)
            if resp.status_code == 200:
                seen += 1
                leaked = [i for i in foreign if i in resp.text]
                assert not leaked, f"GET {r.path} as {role} shows tenant A's {leaked}"
    assert seen > 10
    for view in ("projects", "epics", "stories", "agents", "api_keys"):
        resp = Client(server.base_url, b["keys"]["user"]).get(f"/{view}")
        assert resp.status_code == 200, resp.text
        assert not [i for i in foreign if i in resp.text], view
        assert resp.json(), f"tenant B sees its own {view}"
