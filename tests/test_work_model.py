"""Issue #3, work model (SPEC §4, reads of §5): CRUD, dependencies, artifacts, reads,
roles and tenant boundaries — always acting as API keys, never as the superuser."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import errors
from wm_support import as_call, call, count, expect_error

from loopctl.testing import Key, Tenant, as_api_role, as_key, create_agent_key, create_tenant

MISSING = "00000000-0000-4000-8000-000000000000"


@dataclass
class Team:
    tenant: Tenant
    user: Key
    orch: Key
    agent: Key


def team(db: psycopg.Connection[Any]) -> Team:
    t = create_tenant(db)
    return Team(t, t.user_key, create_agent_key(db, t.id, "orchestrator", "orch"),
                create_agent_key(db, t.id, "agent", "impl"))


def project_with_epic(db: psycopg.Connection[Any], key: Key,
                      slug: str = "proj") -> tuple[str, str]:
    p = as_call(db, key, "create_project", name="Project", slug=slug)
    e = as_call(db, key, "create_epic", project_id=p["id"], number=1, title="Epic one")
    return p["id"], e["id"]


def set_status(db: psycopg.Connection[Any], story_id: str, agent_status: str,
               verified_status: str = "unverified") -> None:
    """Fixture shortcut (superuser): the lifecycle functions belong to the state machine."""
    db.execute("update app.stories set agent_status = %s, verified_status = %s where id = %s",
               (agent_status, verified_status, story_id))


# -- projects --------------------------------------------------------------------------------
def test_project_crud_and_roles(db: psycopg.Connection) -> None:
    tm = team(db)
    p = as_call(db, tm.user, "create_project", name="Alpha", slug="alpha",
                repo_url="https://git.example/alpha")
    assert (p["name"], p["slug"], p["status"]) == ("Alpha", "alpha", "active")
    assert as_call(db, tm.orch, "create_project", name="Beta", slug="beta")["slug"] == "beta"
    expect_error(db, tm.agent, "create_project", 403, "insufficient_role", name="X", slug="x")

    got = as_call(db, tm.agent, "get_project", project_id=p["id"])
    assert got["repo_url"] == "https://git.example/alpha" and got["stories_count"] == 0

    # Only the given fields change.
    up = as_call(db, tm.orch, "update_project", project_id=p["id"], description="d")
    assert (up["name"], up["description"], up["repo_url"]) == (
        "Alpha", "d", "https://git.example/alpha")
    up = as_call(db, tm.user, "update_project", project_id=p["id"], status="archived")
    assert (up["status"], up["description"]) == ("archived", "d")

    listed = as_call(db, tm.agent, "list_projects")
    assert listed["meta"]["total"] == 2 and not listed["meta"]["has_more"]
    assert as_call(db, tm.agent, "list_projects", status="active")["meta"]["total"] == 1

    expect_error(db, tm.user, "create_project", 409, "project_slug_taken", name="A", slug="alpha")
    expect_error(db, tm.orch, "delete_project", 403, "insufficient_role", project_id=p["id"])
    assert as_call(db, tm.user, "delete_project", project_id=p["id"])["deleted"] is True
    expect_error(db, tm.user, "get_project", 404, "project_not_found", project_id=p["id"])
    assert count(db, "projects", tm.tenant.id) == 1


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": "", "slug": "ok"}, "name"),
    ({"name": "x" * 201, "slug": "ok"}, "name"),
    ({"name": "Ok", "slug": "Bad Slug"}, "slug"),
    ({"name": "Ok", "slug": "-starts-with-dash"}, "slug"),
    ({"name": "Ok", "slug": "ok", "repo_url": "u" * 2001}, "repo_url"),
])
def test_project_bad_input_is_422_and_creates_nothing(
        db: psycopg.Connection, kwargs: dict[str, Any], field: str) -> None:
    tm = team(db)
    body = expect_error(db, tm.user, "create_project", 422, "validation_failed", **kwargs)
    assert body["details"]["errors"][0]["path"] == field
    assert count(db, "projects", tm.tenant.id) == 0


def test_update_project_bad_status_is_422(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, _ = project_with_epic(db, tm.user)
    expect_error(db, tm.user, "update_project", 422, "validation_failed", project_id=pid,
                 status="deleted")


def test_unauthenticated_and_forged_callers_get_401(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, _ = project_with_epic(db, tm.user)
    for claims in ({}, {"role": "loopctl_user", "tenant_id": tm.tenant.id},
                   {"role": "loopctl_user", "key_hash": "0" * 64}):
        with pytest.raises(psycopg.Error) as caught, as_api_role(db, "loopctl_user", claims):
            call(db, "get_project", project_id=pid)
        assert '"unauthenticated"' in str(caught.value)


# -- epics and stories -----------------------------------------------------------------------
def test_epic_and_story_crud(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    expect_error(db, tm.user, "create_epic", 409, "epic_number_taken", project_id=pid,
                 number=1, title="again")
    expect_error(db, tm.agent, "create_epic", 403, "insufficient_role", project_id=pid,
                 number=2, title="no")
    e2 = as_call(db, tm.orch, "update_epic", epic_id=eid, phase="build")
    assert (e2["title"], e2["phase"], e2["number"]) == ("Epic one", "build", 1)

    s = as_call(db, tm.orch, "create_story", project_id=pid, epic_id=eid, number="1.1",
                title="Login", estimated_hours=3,
                acceptance_criteria=[{"criterion": "a"}, {"id": "AC-2", "description": "b"}])
    assert (s["number"], s["ac_count"], s["epic_number"]) == ("1.1", 2, 1)
    assert [c["id"] for c in s["acceptance_criteria"]] == ["AC-1", "AC-2"]
    expect_error(db, tm.user, "create_story", 409, "story_number_taken", project_id=pid,
                 epic_id=eid, number="1.1", title="dup")

    # update_story changes content only: statuses and criterion statuses stay.
    set_status(db, s["id"], "implementing")
    as_call(db, tm.orch, "update_acceptance_criterion", story_id=s["id"], ac_id="AC-1",
            status="verified")
    up = as_call(db, tm.user, "update_story", story_id=s["id"], title="Login v2",
                 acceptance_criteria=[{"id": "AC-1", "description": "a"},
                                      {"criterion": "c"}])
    assert (up["title"], up["estimated_hours"], up["agent_status"]) == (
        "Login v2", 3, "implementing")
    assert [(c["id"], c["status"]) for c in up["acceptance_criteria"]] == [
        ("AC-1", "verified"), ("AC-2", "pending")]
    assert up["acceptance_criteria"][1]["description"] == "c"

    got = as_call(db, tm.agent, "get_story", story_id=s["id"])
    assert got["latest_review"] is None and got["dependencies"] == [] and got["blockers"] == []
    assert got["ac_count"] == 2

    expect_error(db, tm.orch, "delete_story", 403, "insufficient_role", story_id=s["id"])
    expect_error(db, tm.orch, "delete_epic", 403, "insufficient_role", epic_id=eid)
    assert as_call(db, tm.user, "delete_epic", epic_id=eid)["stories_deleted"] == 1
    assert count(db, "stories", tm.tenant.id) == 0


@pytest.mark.parametrize(("kwargs", "path"), [
    ({"number": "1 1", "title": "t"}, "number"),
    ({"number": "1.1", "title": ""}, "title"),
    ({"number": "1.1", "title": "t" * 501}, "title"),
    ({"number": "1.1", "title": "t", "estimated_hours": -1}, "estimated_hours"),
    ({"number": "1.1", "title": "t", "acceptance_criteria": {"criterion": "x"}},
     "acceptance_criteria"),
    ({"number": "1.1", "title": "t", "acceptance_criteria": [{"criterion": 5}]},
     "acceptance_criteria[0]"),
    ({"number": "1.1", "title": "t",
      "acceptance_criteria": [{"criterion": "a"}, {"id": "AC-1", "description": "b"}]},
     "acceptance_criteria"),
])
def test_story_bad_input_is_422_and_creates_nothing(
        db: psycopg.Connection, kwargs: dict[str, Any], path: str) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    body = expect_error(db, tm.user, "create_story", 422, "validation_failed", project_id=pid,
                        epic_id=eid, **kwargs)
    assert body["details"]["errors"][0]["path"] == path, body
    assert count(db, "stories", tm.tenant.id) == 0
    assert count(db, "acceptance_criteria", tm.tenant.id) == 0


def test_story_epic_must_belong_to_the_project(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, _ = project_with_epic(db, tm.user, "one")
    _, other_eid = project_with_epic(db, tm.user, "two")
    expect_error(db, tm.user, "create_story", 422, "epic_not_in_project", project_id=pid,
                 epic_id=other_eid, number="1.1", title="t")


def test_acceptance_criterion_status(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    s = as_call(db, tm.user, "create_story", project_id=pid, epic_id=eid, number="1.1",
                title="t", acceptance_criteria=["first"])
    expect_error(db, tm.agent, "update_acceptance_criterion", 403, "insufficient_role",
                 story_id=s["id"], ac_id="AC-1", status="verified")
    expect_error(db, tm.orch, "update_acceptance_criterion", 422, "validation_failed",
                 story_id=s["id"], ac_id="AC-1", status="done")
    expect_error(db, tm.orch, "update_acceptance_criterion", 404, "criterion_not_found",
                 story_id=s["id"], ac_id="AC-9", status="failed")
    got = as_call(db, tm.orch, "update_acceptance_criterion", story_id=s["id"], ac_id="AC-1",
                  status="failed")
    assert got["status"] == "failed"
    listed = as_call(db, tm.agent, "list_acceptance_criteria", story_id=s["id"])
    assert [(c["id"], c["status"]) for c in listed["data"]] == [("AC-1", "failed")]


# -- dependencies ----------------------------------------------------------------------------
def stories(db: psycopg.Connection[Any], key: Key, pid: str, eid: str,
            *numbers: str) -> dict[str, str]:
    return {n: as_call(db, key, "create_story", project_id=pid, epic_id=eid, number=n,
                       title=f"Story {n}")["id"] for n in numbers}


def test_story_dependencies_refuse_cycles_and_name_the_path(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    s = stories(db, tm.user, pid, eid, "1.1", "1.2", "1.3")
    dep = as_call(db, tm.orch, "add_story_dependency", story_id=s["1.2"],
                  depends_on_story_id=s["1.1"])
    assert dep["created"] is True
    assert as_call(db, tm.orch, "add_story_dependency", story_id=s["1.2"],
                   depends_on_story_id=s["1.1"])["created"] is False
    as_call(db, tm.orch, "add_story_dependency", story_id=s["1.3"], depends_on_story_id=s["1.2"])
    body = expect_error(db, tm.orch, "add_story_dependency", 422, "dependency_cycle",
                        story_id=s["1.1"], depends_on_story_id=s["1.3"])
    assert body["details"]["cycles"][0] == ["story 1.1", "story 1.3", "story 1.2", "story 1.1"]
    assert "story 1.1 -> story 1.3 -> story 1.2 -> story 1.1" in body["message"]
    expect_error(db, tm.orch, "add_story_dependency", 422, "dependency_cycle",
                 story_id=s["1.1"], depends_on_story_id=s["1.1"])
    expect_error(db, tm.agent, "add_story_dependency", 403, "insufficient_role",
                 story_id=s["1.1"], depends_on_story_id=s["1.3"])
    assert count(db, "story_dependencies", tm.tenant.id) == 2

    as_call(db, tm.user, "remove_story_dependency", story_id=s["1.2"],
            depends_on_story_id=s["1.1"])
    expect_error(db, tm.user, "remove_story_dependency", 404, "dependency_not_found",
                 story_id=s["1.2"], depends_on_story_id=s["1.1"])
    # With 1.2 -> 1.1 gone, 1.1 -> 1.3 is no longer a cycle.
    as_call(db, tm.orch, "add_story_dependency", story_id=s["1.1"], depends_on_story_id=s["1.3"])


def test_dependencies_stay_inside_one_project(db: psycopg.Connection) -> None:
    tm = team(db)
    p1, e1 = project_with_epic(db, tm.user, "one")
    p2, e2 = project_with_epic(db, tm.user, "two")
    a = stories(db, tm.user, p1, e1, "1.1")["1.1"]
    b = stories(db, tm.user, p2, e2, "1.1")["1.1"]
    expect_error(db, tm.user, "add_story_dependency", 422, "cross_project_dependency",
                 story_id=a, depends_on_story_id=b)
    expect_error(db, tm.user, "add_epic_dependency", 422, "cross_project_dependency",
                 epic_id=e1, depends_on_epic_id=e2)
    expect_error(db, tm.user, "add_story_dependency", 404, "story_not_found",
                 story_id=a, depends_on_story_id=MISSING)


def test_epic_cycles_and_cycles_across_levels(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, e1 = project_with_epic(db, tm.user)
    e2 = as_call(db, tm.user, "create_epic", project_id=pid, number=2, title="Two")["id"]
    e3 = as_call(db, tm.user, "create_epic", project_id=pid, number=3, title="Three")["id"]
    as_call(db, tm.user, "add_epic_dependency", epic_id=e2, depends_on_epic_id=e1)
    as_call(db, tm.user, "add_epic_dependency", epic_id=e3, depends_on_epic_id=e2)
    body = expect_error(db, tm.user, "add_epic_dependency", 422, "dependency_cycle",
                        epic_id=e1, depends_on_epic_id=e3)
    assert body["details"]["cycles"][0] == ["epic 1", "epic 3", "epic 2", "epic 1"]

    # Story 1.1 (epic 1) waiting for story 2.1 (epic 2), while epic 2 waits for all of
    # epic 1: neither could ever start.
    s11 = stories(db, tm.user, pid, e1, "1.1")["1.1"]
    s21 = stories(db, tm.user, pid, e2, "2.1")["2.1"]
    body = expect_error(db, tm.user, "add_story_dependency", 422, "dependency_cycle",
                        story_id=s11, depends_on_story_id=s21)
    assert "story 1.1" in body["details"]["cycles"][0]
    assert count(db, "story_dependencies", tm.tenant.id) == 0
    as_call(db, tm.user, "remove_epic_dependency", epic_id=e2, depends_on_epic_id=e1)
    assert as_call(db, tm.user, "add_story_dependency", story_id=s11,
                   depends_on_story_id=s21)["created"] is True
    # ... and now the epic dependency would close the same loop.
    expect_error(db, tm.user, "add_epic_dependency", 422, "dependency_cycle",
                 epic_id=e2, depends_on_epic_id=e1)


# -- artifacts -------------------------------------------------------------------------------
def test_artifacts_are_reported_listed_and_emit_events(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    sid = stories(db, tm.user, pid, eid, "1.1")["1.1"]
    a = as_call(db, tm.agent, "report_artifact", story_id=sid, artifact_type="pull_request",
                path="https://git.example/pr/1", commit_sha="abc1234", details={"lines": 40})
    assert (a["reported_by_agent_id"], a["details"]) == (tm.agent.agent_id, {"lines": 40})
    listed = as_call(db, tm.orch, "list_artifacts", story_id=sid)
    assert [x["id"] for x in listed["data"]] == [a["id"]]
    ev = db.execute("select payload from app.events where tenant_id = %s "
                    "and event_type = 'artifact.reported'", (tm.tenant.id,)).fetchall()
    assert [e[0]["artifact_id"] for e in ev] == [a["id"]]

    for bad in ({"commit_sha": "not-a-sha"}, {"artifact_type": ""}, {"details": [1, 2]}):
        kwargs = {"artifact_type": "file", **bad}
        expect_error(db, tm.agent, "report_artifact", 422, "validation_failed",
                     story_id=sid, **kwargs)
    assert count(db, "artifacts", tm.tenant.id) == 1


# -- reads -----------------------------------------------------------------------------------
def test_list_stories_filters_pagination_and_limits(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    ids = stories(db, tm.user, pid, eid, "1.10", "1.2", "1.1")
    set_status(db, ids["1.2"], "implementing")
    page = as_call(db, tm.agent, "list_stories", project_id=pid, limit=2)
    assert [s["number"] for s in page["data"]] == ["1.1", "1.2"]  # natural order
    assert page["meta"] == {"limit": 2, "offset": 0, "total": 3, "has_more": True}
    page = as_call(db, tm.agent, "list_stories", project_id=pid, limit=2, offset=2)
    assert [s["number"] for s in page["data"]] == ["1.10"] and not page["meta"]["has_more"]
    only = as_call(db, tm.agent, "list_stories", project_id=pid, agent_status="implementing")
    assert [s["number"] for s in only["data"]] == ["1.2"]
    assert as_call(db, tm.agent, "list_stories", epic_id=eid,
                   verified_status="verified")["meta"]["total"] == 0
    expect_error(db, tm.agent, "list_stories", 422, "validation_failed", limit=501)
    expect_error(db, tm.agent, "list_stories", 422, "validation_failed", limit=0)
    expect_error(db, tm.agent, "list_stories", 422, "validation_failed", agent_status="done")
    expect_error(db, tm.agent, "list_stories", 404, "project_not_found", project_id=MISSING)


def test_ready_blocked_progress_and_graph(db: psycopg.Connection) -> None:
    """Fixture: epic 1 {1.1 verified, 1.2 pending}, epic 2 {2.1 -> 1.1, 2.2} with
    epic 2 depending on epic 1; epic 3 {3.1 -> 2.1}."""
    tm = team(db)
    pid, e1 = project_with_epic(db, tm.user)
    e2 = as_call(db, tm.user, "create_epic", project_id=pid, number=2, title="Two")["id"]
    e3 = as_call(db, tm.user, "create_epic", project_id=pid, number=3, title="Three")["id"]
    s = stories(db, tm.user, pid, e1, "1.1", "1.2")
    s |= stories(db, tm.user, pid, e2, "2.1", "2.2")
    s |= stories(db, tm.user, pid, e3, "3.1")
    db.execute("update app.stories set estimated_hours = 2 where project_id = %s", (pid,))
    as_call(db, tm.user, "add_story_dependency", story_id=s["2.1"], depends_on_story_id=s["1.1"])
    as_call(db, tm.user, "add_story_dependency", story_id=s["3.1"], depends_on_story_id=s["2.1"])
    as_call(db, tm.user, "add_epic_dependency", epic_id=e2, depends_on_epic_id=e1)
    set_status(db, s["1.1"], "reported_done", "verified")

    def numbers(result: dict[str, Any]) -> list[str]:
        return [x["number"] for x in result["data"]]

    assert numbers(as_call(db, tm.agent, "ready_stories", project_id=pid)) == ["1.2"]
    blocked = as_call(db, tm.agent, "blocked_stories", project_id=pid)
    assert numbers(blocked) == ["2.1", "2.2", "3.1"]
    by_number = {x["number"]: x["blockers"] for x in blocked["data"]}
    assert [(b["type"], b["number"]) for b in by_number["2.1"]] == [("epic", 1)]
    assert [(b["type"], b["number"]) for b in by_number["3.1"]] == [("story", "2.1")]

    # Once epic 1 is verified, epic 2 opens; 3.1 still waits for 2.1.
    set_status(db, s["1.2"], "reported_done", "verified")
    assert numbers(as_call(db, tm.agent, "ready_stories", project_id=pid)) == ["2.1", "2.2"]
    story = as_call(db, tm.agent, "get_story", story_id=s["3.1"])
    assert [b["number"] for b in story["blockers"]] == ["2.1"]
    assert [d["number"] for d in story["dependencies"]] == ["2.1"]

    prog = as_call(db, tm.agent, "project_progress", project_id=pid)
    assert prog["stories_total"] == 5 and prog["percent_verified"] == 40.0
    assert prog["verified_status"] == {"unverified": 3, "verified": 2, "rejected": 0}
    assert prog["agent_status"]["reported_done"] == 2 and prog["agent_status"]["pending"] == 3
    assert prog["estimated_hours"] == {"total": 10, "done": 4}
    assert [(e["number"], e["percent_verified"]) for e in prog["epics"]] == [
        (1, 100.0), (2, 0), (3, 0)]
    ep = as_call(db, tm.agent, "epic_progress", epic_id=e1)
    assert (ep["stories_total"], ep["percent_verified"]) == (2, 100.0)

    graph = as_call(db, tm.agent, "dependency_graph", project_id=pid)
    assert len([n for n in graph["nodes"] if n["type"] == "story"]) == 5
    assert len([n for n in graph["nodes"] if n["type"] == "epic"]) == 3
    edges = {(e["type"], e["from"], e["to"]) for e in graph["edges"]}
    assert edges == {("story", s["2.1"], s["1.1"]), ("story", s["3.1"], s["2.1"]),
                     ("epic", e2, e1)}


def test_views_show_the_callers_tenant_with_counts(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    as_call(db, tm.user, "create_story", project_id=pid, epic_id=eid, number="1.1", title="t",
            acceptance_criteria=["a", "b"])
    other = team(db)
    project_with_epic(db, other.user)
    with as_key(db, tm.agent):
        rows = db.execute("select number, epic_number, ac_count from api.stories").fetchall()
        assert rows == [("1.1", 1, 2)]
        assert db.execute("select count(*) from api.projects").fetchone()[0] == 1
        assert db.execute("select count(*) from api.acceptance_criteria").fetchone()[0] == 2


def test_api_roles_cannot_name_tables_or_write_through_views(db: psycopg.Connection) -> None:
    tm = team(db)
    project_with_epic(db, tm.user)
    for key in (tm.user, tm.orch, tm.agent):
        with pytest.raises(errors.InsufficientPrivilege), as_key(db, key):
            db.execute("select * from app.projects")
        with pytest.raises(errors.InsufficientPrivilege), as_key(db, key):
            db.execute("update api.projects set name = 'hijack'")
        with pytest.raises(errors.InsufficientPrivilege), as_key(db, key):
            db.execute("insert into api.epics (number, title) values (9, 'x')")


# -- tenant boundaries -----------------------------------------------------------------------
def test_tenant_a_cannot_see_change_or_reference_tenant_b(db: psycopg.Connection) -> None:
    a, b = team(db), team(db)
    pa, ea = project_with_epic(db, a.user)
    pb, eb = project_with_epic(db, b.user)
    sa = stories(db, a.user, pa, ea, "1.1")["1.1"]
    sb = stories(db, b.user, pb, eb, "1.1")["1.1"]
    before = db.execute("select count(*), max(updated_at) from app.stories "
                        "where tenant_id = %s", (b.tenant.id,)).fetchone()

    p404 = ("project_not_found", "project_id")
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("get_project", {"project_id": pb}, p404[0]),
        ("update_project", {"project_id": pb, "name": "mine"}, p404[0]),
        ("delete_project", {"project_id": pb}, p404[0]),
        ("create_epic", {"project_id": pb, "number": 5, "title": "x"}, p404[0]),
        ("create_story", {"project_id": pa, "epic_id": eb, "number": "9", "title": "x"},
         "epic_not_found"),
        ("update_epic", {"epic_id": eb, "title": "mine"}, "epic_not_found"),
        ("delete_epic", {"epic_id": eb}, "epic_not_found"),
        ("get_story", {"story_id": sb}, "story_not_found"),
        ("update_story", {"story_id": sb, "title": "mine"}, "story_not_found"),
        ("delete_story", {"story_id": sb}, "story_not_found"),
        ("update_acceptance_criterion", {"story_id": sb, "ac_id": "AC-1", "status": "verified"},
         "story_not_found"),
        ("add_story_dependency", {"story_id": sa, "depends_on_story_id": sb}, "story_not_found"),
        ("add_story_dependency", {"story_id": sb, "depends_on_story_id": sa}, "story_not_found"),
        ("add_epic_dependency", {"epic_id": ea, "depends_on_epic_id": eb}, "epic_not_found"),
        ("report_artifact", {"story_id": sb, "artifact_type": "file"}, "story_not_found"),
        ("list_artifacts", {"story_id": sb}, "story_not_found"),
        ("list_stories", {"project_id": pb}, p404[0]),
        ("ready_stories", {"project_id": pb}, p404[0]),
        ("blocked_stories", {"project_id": pb}, p404[0]),
        ("project_progress", {"project_id": pb}, p404[0]),
        ("epic_progress", {"epic_id": eb}, "epic_not_found"),
        ("dependency_graph", {"project_id": pb}, p404[0]),
        ("export_project", {"project_id": pb}, p404[0]),
        ("import_project", {"project_id": pb, "payload": {"epics": [
            {"number": 9, "title": "x"}]}}, p404[0]),
    ]
    for fn, kwargs, code in cases:
        expect_error(db, a.user, fn, 404, code, **kwargs)

    with as_key(db, a.user):
        for view, col in (("projects", "id"), ("epics", "id"), ("stories", "id")):
            assert db.execute(f"select count(*) from api.{view} where {col} in (%s, %s, %s)",
                              (pb, eb, sb)).fetchone()[0] == 0
        assert db.execute("select count(*) from api.stories").fetchone()[0] == 1
        assert db.execute("select api.list_stories()").fetchone()[0]["meta"]["total"] == 1

    after = db.execute("select count(*), max(updated_at) from app.stories "
                       "where tenant_id = %s", (b.tenant.id,)).fetchone()
    assert after == before
    assert count(db, "epics", b.tenant.id) == 1 and count(db, "artifacts", b.tenant.id) == 0
    assert count(db, "story_dependencies", a.tenant.id) == 0


def test_forged_claims_see_no_rows_through_the_views(db: psycopg.Connection) -> None:
    tm = team(db)
    project_with_epic(db, tm.user)
    for claims in ({"role": "loopctl_agent", "tenant_id": tm.tenant.id},
                   {"role": "loopctl_agent", "key_hash": "f" * 64}, {}):
        with as_api_role(db, "loopctl_agent", claims):
            assert db.execute("select count(*) from api.projects").fetchone()[0] == 0
            assert db.execute("select count(*) from api.epics").fetchone()[0] == 0


def test_concurrent_dependency_additions_cannot_close_a_cycle(fresh_db: str) -> None:
    """Two requests add 1.1 -> 1.2 and 1.2 -> 1.1 at the same time: the second waits on the
    project row, then sees the first edge and is refused."""
    with psycopg.connect(fresh_db, autocommit=True) as db, \
            psycopg.connect(fresh_db, autocommit=True) as other:
        tm = team(db)
        pid, eid = project_with_epic(db, tm.user)
        s = stories(db, tm.user, pid, eid, "1.1", "1.2")
        outcome: dict[str, Any] = {}

        def reverse_edge() -> None:
            try:
                outcome["result"] = as_call(other, tm.orch, "add_story_dependency",
                                            story_id=s["1.2"], depends_on_story_id=s["1.1"])
            except psycopg.Error as exc:
                outcome["error"] = exc

        with as_key(db, tm.user, commit=True):
            call(db, "add_story_dependency", story_id=s["1.1"], depends_on_story_id=s["1.2"])
            worker = threading.Thread(target=reverse_edge)
            worker.start()
            worker.join(1.0)
            assert worker.is_alive(), "the second addition should wait for the first"
        worker.join(30)
        assert "error" in outcome, outcome
        assert '"dependency_cycle"' in str(outcome["error"])
        assert count(db, "story_dependencies", tm.tenant.id) == 1


def test_get_story_shows_the_latest_review_and_verification(db: psycopg.Connection) -> None:
    tm = team(db)
    pid, eid = project_with_epic(db, tm.user)
    sid = stories(db, tm.user, pid, eid, "1.1")["1.1"]
    # Records the state machine writes (inserted directly: it is not under test here).
    for i, summary in enumerate(("first look", "second look"), 1):
        db.execute("insert into app.reviews (tenant_id, story_id, reviewer_agent_id, "
                   "reviewer_key_id, review_type, findings_count, summary, completed_at) "
                   "values (%s, %s, %s, %s, 'code', %s, %s, now() + make_interval(secs => %s))",
                   (tm.tenant.id, sid, tm.orch.agent_id, tm.orch.id, i, summary, i))
        db.execute("insert into app.verification_results (tenant_id, story_id, iteration, "
                   "result, summary, verifier_agent_id, verifier_key_id) "
                   "values (%s, %s, %s, %s, %s, %s, %s)",
                   (tm.tenant.id, sid, i, "reject" if i == 1 else "pass", summary,
                    tm.orch.agent_id, tm.orch.id))
    got = as_call(db, tm.agent, "get_story", story_id=sid)
    assert (got["latest_review"]["summary"], got["latest_review"]["findings_count"]) == (
        "second look", 2)
    assert (got["latest_verification"]["iteration"], got["latest_verification"]["result"]) == (
        2, "pass")
