"""The lifecycle over real HTTP (/api/v1 routes -> api.* functions): statuses, a gate
refusal that answers 409 while its violation row commits, and per-item bulk results."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from gateway_helpers import Client, error_code, serve
from sm_support import World, make_story, make_world

from loopctl.testing import ServerProcess


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    with serve(module_db) as s:
        yield s


@pytest.fixture(scope="module")
def world(module_db: str) -> World:
    with psycopg.connect(module_db, autocommit=True) as admin:
        return make_world(admin)


def test_lifecycle_and_gates_over_http(server: ServerProcess, module_db: str,
                                       world: World) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        sid = make_story(admin, world, "1.1")
    impl = Client(server.base_url, world.implementer)
    reporter = Client(server.base_url, world.reporter)
    orch = Client(server.base_url, world.orchestrator)
    base = f"/api/v1/stories/{sid}"

    r = impl.post(f"{base}/contract", json={"story_title": "wrong", "ac_count": 2})
    assert r.status_code == 422 and error_code(r) == "contract_mismatch"
    assert r.json()["error"]["details"]["expected_title"] == "Story 1.1"
    r = impl.post(f"{base}/contract", json={"story_title": "Story 1.1", "ac_count": 2})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["story"]["agent_status"] == "contracted"
    assert impl.post(f"{base}/claim").status_code == 200
    r = impl.post(f"{base}/start-work")  # the alias
    assert r.status_code == 200 and r.json()["data"]["next_actions"][:2] == [
        "request_review", "report"]

    r = impl.post(f"{base}/report-done", json={})
    assert r.status_code == 409 and error_code(r) == "self_report_blocked"
    with psycopg.connect(module_db, autocommit=True) as admin:
        n = admin.execute("select count(*) from app.custody_violations where story_id = %s",
                          (sid,)).fetchone()[0]
    assert n == 1  # refused, yet recorded

    assert reporter.post(f"{base}/report", json={}).status_code == 200
    r = orch.post(f"{base}/verify", json={"result": "pass"})
    assert r.status_code == 422 and error_code(r) == "review_not_conducted"
    r = orch.post(f"{base}/review-complete", json={"review_type": "code_review"})
    assert r.status_code == 201, r.text
    r = orch.post(f"{base}/verify", json={"result": "pass"})
    assert r.status_code == 200
    assert r.json()["data"]["story"]["verified_status"] == "verified"
    r = orch.post(f"{base}/claim")
    assert r.status_code == 403 and error_code(r) == "insufficient_role"

    other = f"/api/v1/stories/{sid[:-1]}{'0' if sid[-1] != '0' else '1'}"
    r = orch.post(f"{other}/force-unclaim")
    assert r.status_code == 404 and error_code(r) == "story_not_found"


def test_bulk_over_http(server: ServerProcess, module_db: str, world: World) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        s1, s2 = make_story(admin, world, "2.1"), make_story(admin, world, "2.2")
    impl = Client(server.base_url, world.implementer)
    r = impl.post(f"/api/v1/stories/{s1}/contract",
                  json={"story_title": "Story 2.1", "ac_count": 2})
    assert r.status_code == 200
    r = impl.post("/api/v1/stories/bulk/claim", json={"story_ids": [s1, s2]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [(i["ok"], i["status"]) for i in data["results"]] == [(True, 200), (False, 409)]
    r = Client(server.base_url, world.orchestrator).post(
        f"/api/v1/epics/{world.epic_id}/verify-all", json={})
    assert r.status_code == 200 and r.json()["data"]["results"] == []
