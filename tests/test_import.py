"""Issue #3, import / merge-import / export exactly as SPEC §4: every refusal is a 422 or
409 naming the offenders and leaves nothing behind; merge touches only what is present."""

from __future__ import annotations

import copy
from typing import Any

import psycopg
import pytest
from wm_support import as_call, call, count, expect_error

from loopctl.testing import Key, as_key, create_agent_key, create_tenant

TABLES = ("epics", "stories", "acceptance_criteria", "story_dependencies", "epic_dependencies")

SPEC_EXAMPLE: dict[str, Any] = {
    "epics": [
        {"number": "1", "title": "Accounts", "description": "sign-up and login", "phase": "p1",
         "stories": [
             {"number": "1.1", "title": "Sign up", "description": "d", "estimated_hours": 3,
              "acceptance_criteria": [{"criterion": "form validates"},
                                      {"id": "AC-2", "description": "email sent"}]},
             {"number": "1.2", "title": "Log in", "estimated_hours": 2.5,
              "acceptance_criteria": [{"criterion": "session cookie"}]},
         ]},
        {"number": 2, "title": "Billing",
         "stories": [{"number": "2.1", "title": "Invoices", "estimated_hours": 5}]},
    ],
    "story_dependencies": [{"story": "1.2", "depends_on": "1.1"}],
    "epic_dependencies": [{"epic": 2, "depends_on": 1}],
}


def setup(db: psycopg.Connection[Any]) -> tuple[str, Key, Key, Key, str]:
    t = create_tenant(db)
    orch = create_agent_key(db, t.id, "orchestrator", "orch")
    agent = create_agent_key(db, t.id, "agent", "impl")
    pid = as_call(db, t.user_key, "create_project", name="Shop", slug="shop")["id"]
    return t.id, t.user_key, orch, agent, pid


def counts(db: psycopg.Connection[Any], tenant_id: str) -> dict[str, int]:
    return {table: count(db, table, tenant_id) for table in TABLES}


NOTHING = dict.fromkeys(TABLES, 0)


def test_import_happy_path(db: psycopg.Connection) -> None:
    tenant_id, user, orch, agent, pid = setup(db)
    expect_error(db, agent, "import_project", 403, "insufficient_role", project_id=pid,
                 payload=SPEC_EXAMPLE)
    with as_key(db, orch, commit=True):
        result = call(db, "import_project", project_id=pid, payload=SPEC_EXAMPLE)
        assert db.execute("select current_setting('response.status')").fetchone()[0] == "201"
    assert result == {"import": {"epics_created": 2, "stories_created": 3,
                                 "acceptance_criteria_created": 3, "dependencies_created": 2}}
    assert counts(db, tenant_id) == {"epics": 2, "stories": 3, "acceptance_criteria": 3,
                                     "story_dependencies": 1, "epic_dependencies": 1}

    stories = {s["number"]: s for s in as_call(db, agent, "list_stories", project_id=pid)["data"]}
    s11 = as_call(db, agent, "get_story", story_id=stories["1.1"]["id"])
    assert [(c["id"], c["description"]) for c in s11["acceptance_criteria"]] == [
        ("AC-1", "form validates"), ("AC-2", "email sent")]
    assert (s11["estimated_hours"], s11["epic_number"], s11["description"]) == (3, 1, "d")
    assert stories["1.2"]["estimated_hours"] == 2.5
    assert [d["number"] for d in as_call(db, agent, "get_story",
                                         story_id=stories["1.2"]["id"])["dependencies"]] == ["1.1"]

    event = db.execute("select payload from app.events where tenant_id = %s "
                       "and event_type = 'project.imported'", (tenant_id,)).fetchone()[0]
    assert (event["project_id"], event["stories_created"]) == (pid, 3)
    actions = db.execute("select distinct action from audit.entries where tenant_id = %s "
                         "and entity_type like 'stor%%'", (tenant_id,)).fetchall()
    assert actions == [("project.import",)]


def test_import_may_reference_existing_stories_and_epics(db: psycopg.Connection) -> None:
    tenant_id, user, _orch, _agent, pid = setup(db)
    as_call(db, user, "import_project", project_id=pid, payload=SPEC_EXAMPLE)
    more = {"epics": [{"number": 3, "title": "Reports",
                       "stories": [{"number": "3.1", "title": "Monthly"}]}],
            "story_dependencies": [{"story": "3.1", "depends_on": "2.1"}],
            "epic_dependencies": [{"epic": 3, "depends_on": "2"}]}
    result = as_call(db, user, "import_project", project_id=pid, payload=more)
    assert result["import"]["dependencies_created"] == 2
    assert count(db, "stories", tenant_id) == 4


def with_stories(n: int) -> dict[str, Any]:
    return {"epics": [{"number": 1, "title": "Big",
                       "stories": [{"number": f"1.{i}", "title": "s"} for i in range(n)]}]}


INVALID: list[tuple[str, Any, str, Any]] = [
    # (case, payload, error code, expected piece of details)
    ("not an object", [1, 2], "invalid_import_payload", None),
    ("epics not an array", {"epics": {"number": 1}}, "invalid_import_payload", "epics"),
    ("epic number a word", {"epics": [{"number": "one", "title": "x"}]},
     "invalid_import_payload", "epics[0].number"),
    ("negative epic number", {"epics": [{"number": -1, "title": "x"}]},
     "invalid_import_payload", "epics[0].number"),
    ("story number not a string", {"epics": [{"number": 1, "title": "x",
                                              "stories": [{"number": 1.1, "title": "s"}]}]},
     "invalid_import_payload", "epics[0].stories[0].number"),
    ("title not a string", {"epics": [{"number": 1, "title": "x",
                                       "stories": [{"number": "1.1", "title": 5}]}]},
     "invalid_import_payload", "epics[0].stories[0].title"),
    ("missing title", {"epics": [{"number": 1, "title": "x",
                                   "stories": [{"number": "1.1"}]}]},
     "invalid_import_payload", "epics[0].stories[0].title"),
    ("hours as a string", {"epics": [{"number": 1, "title": "x", "stories": [
        {"number": "1.1", "title": "s", "estimated_hours": "3"}]}]},
     "invalid_import_payload", "epics[0].stories[0].estimated_hours"),
    ("criteria not a list", {"epics": [{"number": 1, "title": "x", "stories": [
        {"number": "1.1", "title": "s", "acceptance_criteria": "all of it"}]}]},
     "invalid_import_payload", "epics[0].stories[0].acceptance_criteria"),
    ("title too long", {"epics": [{"number": 1, "title": "x" * 501}]},
     "invalid_import_payload", "epics[0].title"),
    ("dependency numbers not strings", {**SPEC_EXAMPLE, "story_dependencies": [
        {"story": 1.2, "depends_on": "1.1"}]}, "invalid_import_payload", "story_dependencies[0]"),
    ("duplicate epics", {"epics": [{"number": 1, "title": "a"}, {"number": "1", "title": "b"}]},
     "duplicate_in_payload", {"epics": [1]}),
    ("duplicate stories across epics", {"epics": [
        {"number": 1, "title": "a", "stories": [{"number": "1.1", "title": "s"}]},
        {"number": 2, "title": "b", "stories": [{"number": "1.1", "title": "t"},
                                                {"number": "2.1", "title": "u"},
                                                {"number": "2.1", "title": "v"}]}]},
     "duplicate_in_payload", {"stories": ["1.1", "2.1"]}),
    ("duplicate dependency", {**SPEC_EXAMPLE, "story_dependencies": [
        {"story": "1.2", "depends_on": "1.1"}, {"story": "1.2", "depends_on": "1.1"}]},
     "duplicate_in_payload", {"story_dependencies": [{"story": "1.2", "depends_on": "1.1"}]}),
    ("duplicate criterion ids", {"epics": [{"number": 1, "title": "a", "stories": [
        {"number": "1.1", "title": "s", "acceptance_criteria": [
            {"criterion": "x"}, {"id": "AC-1", "description": "y"}]}]}]},
     "invalid_import_payload", "epics[0].stories[0].acceptance_criteria"),
    ("unknown stories", {**SPEC_EXAMPLE, "story_dependencies": [
        {"story": "1.2", "depends_on": "9.9"}, {"story": "8.8", "depends_on": "1.1"}]},
     "unknown_references", {"unknown_stories": ["8.8", "9.9"]}),
    ("unknown epic", {**SPEC_EXAMPLE, "epic_dependencies": [{"epic": 2, "depends_on": 7}]},
     "unknown_references", {"unknown_epics": [7]}),
    ("story cycle", {**SPEC_EXAMPLE, "story_dependencies": [
        {"story": "1.2", "depends_on": "1.1"}, {"story": "1.1", "depends_on": "1.2"}]},
     "dependency_cycle", {"cycles": [["story 1.1", "story 1.2", "story 1.1"]]}),
    ("self dependency", {**SPEC_EXAMPLE, "story_dependencies": [
        {"story": "1.1", "depends_on": "1.1"}]},
     "dependency_cycle", {"cycles": [["story 1.1", "story 1.1"]]}),
    ("epic cycle", {**SPEC_EXAMPLE, "epic_dependencies": [
        {"epic": 2, "depends_on": 1}, {"epic": 1, "depends_on": 2}]},
     "dependency_cycle", None),
    ("cycle across levels", {**SPEC_EXAMPLE, "story_dependencies": [
        {"story": "1.1", "depends_on": "2.1"}]}, "dependency_cycle", None),
    ("too many epics", {"epics": [{"number": i, "title": "e"} for i in range(501)]},
     "import_too_large", {"epics": 501, "max_epics": 500}),
    ("too many stories", with_stories(5001), "import_too_large",
     {"stories": 5001, "max_stories": 5000}),
]


@pytest.mark.parametrize(("payload", "code", "expected"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_imports_are_422_naming_offenders_and_leave_nothing(
        db: psycopg.Connection, payload: Any, code: str, expected: Any) -> None:
    tenant_id, user, _orch, _agent, pid = setup(db)
    body = expect_error(db, user, "import_project", 422, code, project_id=pid, payload=payload)
    details = body["details"]
    if isinstance(expected, str):
        assert expected in [e["path"] for e in details["errors"]], details
    elif isinstance(expected, dict):
        assert details.items() >= expected.items(), details
    assert counts(db, tenant_id) == NOTHING
    assert db.execute("select count(*) from app.events where tenant_id = %s "
                      "and event_type = 'project.imported'", (tenant_id,)).fetchone()[0] == 0


def test_every_offender_is_listed(db: psycopg.Connection) -> None:
    _tenant_id, user, _orch, _agent, pid = setup(db)
    payload = {"epics": [{"number": 1, "title": "e", "stories": [
        {"number": f"1.{i}", "title": 7} for i in range(3)]}]}
    body = expect_error(db, user, "import_project", 422, "invalid_import_payload",
                        project_id=pid, payload=payload)
    assert body["details"]["error_count"] == 3
    assert [e["path"] for e in body["details"]["errors"]] == [
        f"epics[0].stories[{i}].title" for i in range(3)]


def test_existing_numbers_without_merge_are_409_listing_them(db: psycopg.Connection) -> None:
    tenant_id, user, _orch, _agent, pid = setup(db)
    as_call(db, user, "import_project", project_id=pid, payload=SPEC_EXAMPLE)
    before = counts(db, tenant_id)
    again = copy.deepcopy(SPEC_EXAMPLE)
    again["epics"].append({"number": 3, "title": "New", "stories": [{"number": "3.1",
                                                                     "title": "n"}]})
    body = expect_error(db, user, "import_project", 409, "numbers_already_exist",
                        project_id=pid, payload=again)
    assert body["details"] == {"epics": [1, 2], "stories": ["1.1", "1.2", "2.1"]}
    assert counts(db, tenant_id) == before  # epic 3 was not created either


def test_merge_updates_only_present_fields_and_never_statuses(db: psycopg.Connection) -> None:
    tenant_id, user, _orch, agent, pid = setup(db)
    as_call(db, user, "import_project", project_id=pid, payload=SPEC_EXAMPLE)
    ids = {s["number"]: s["id"] for s in
           as_call(db, agent, "list_stories", project_id=pid)["data"]}
    # The lifecycle moved on (set directly: the state machine is not under test here).
    db.execute("update app.stories set agent_status = 'implementing', verified_status = "
               "'rejected' where id = %s", (ids["1.1"],))
    with as_key(db, user, commit=True):
        call(db, "update_acceptance_criterion", story_id=ids["1.1"], ac_id="AC-2",
             status="verified")

    merge = {
        "epics": [
            {"number": 1, "phase": "p2",  # title and description absent: kept
             "stories": [
                 {"number": "1.1", "title": "Sign up v2", "agent_status": "pending",
                  "verified_status": "verified",
                  "acceptance_criteria": [{"id": "AC-2", "description": "email sent"},
                                          {"id": "AC-3", "description": "captcha"}]},
                 {"number": "1.2", "estimated_hours": 4},
                 {"number": "1.3", "title": "Reset password"},
             ]},
            {"number": 4, "title": "Admin", "stories": [{"number": "4.1", "title": "Users"}]},
        ],
        "story_dependencies": [{"story": "1.2", "depends_on": "1.1"},
                               {"story": "1.3", "depends_on": "1.1"}],
        "epic_dependencies": [{"epic": 2, "depends_on": 1}],
    }
    with as_key(db, user, commit=True):
        result = call(db, "import_project", project_id=pid, payload=merge, merge=True)
        assert db.execute("select current_setting('response.status')").fetchone()[0] == "200"
    assert result["import"] == {
        "epics_created": 1, "stories_created": 2, "acceptance_criteria_created": 0,
        "dependencies_created": 1, "epics_updated": 1, "stories_updated": 2,
        "stories_orphaned": ["2.1"], "dependencies_existing": 2}

    s11 = as_call(db, agent, "get_story", story_id=ids["1.1"])
    assert (s11["title"], s11["description"], s11["estimated_hours"]) == ("Sign up v2", "d", 3)
    assert (s11["agent_status"], s11["verified_status"]) == ("implementing", "rejected")
    assert [(c["id"], c["status"]) for c in s11["acceptance_criteria"]] == [
        ("AC-2", "verified"), ("AC-3", "pending")]
    s12 = as_call(db, agent, "get_story", story_id=ids["1.2"])
    assert (s12["title"], s12["estimated_hours"]) == ("Log in", 4)
    epic1 = as_call(db, agent, "get_epic", epic_id=s11["epic_id"])
    assert (epic1["title"], epic1["description"], epic1["phase"]) == (
        "Accounts", "sign-up and login", "p2")
    # Orphans are reported, not deleted.
    assert as_call(db, agent, "get_story", story_id=ids["2.1"])["number"] == "2.1"
    assert count(db, "stories", tenant_id) == 5

    # A story listed under another epic moves there (its statuses still untouched).
    moved = as_call(db, user, "import_project", project_id=pid, merge=True, payload={
        "epics": [{"number": 4, "stories": [{"number": "1.2"}]}]})
    assert moved["import"]["stories_updated"] == 1
    s12 = as_call(db, agent, "get_story", story_id=ids["1.2"])
    assert (s12["epic_number"], s12["title"]) == (4, "Log in")
    as_call(db, user, "import_project", project_id=pid, merge=True, payload={
        "epics": [{"number": 1, "stories": [{"number": "1.2"}]}]})

    # The same merge again changes nothing.
    again = as_call(db, user, "import_project", project_id=pid, payload=merge, merge=True)
    assert (again["import"]["stories_updated"], again["import"]["epics_updated"],
            again["import"]["dependencies_created"],
            again["import"]["dependencies_existing"]) == (0, 0, 0, 3)


def test_merge_checks_cycles_over_old_and_new(db: psycopg.Connection) -> None:
    tenant_id, user, _orch, _agent, pid = setup(db)
    as_call(db, user, "import_project", project_id=pid, payload=SPEC_EXAMPLE)
    before = counts(db, tenant_id)
    merge = {"epics": [{"number": 1, "stories": [{"number": "1.1", "title": "changed"}]}],
             "story_dependencies": [{"story": "1.1", "depends_on": "1.2"}]}
    body = expect_error(db, user, "import_project", 422, "dependency_cycle", project_id=pid,
                        payload=merge, merge=True)
    assert body["details"]["cycles"][0] == ["story 1.1", "story 1.2", "story 1.1"]
    assert counts(db, tenant_id) == before
    title = db.execute("select title from app.stories where tenant_id = %s and number = '1.1'",
                       (tenant_id,)).fetchone()[0]
    assert title == "Sign up"
    # Merge still requires a title for what it creates, and refuses nulls for titles.
    expect_error(db, user, "import_project", 422, "invalid_import_payload", project_id=pid,
                 payload={"epics": [{"number": 1, "stories": [{"number": "1.9"}]}]}, merge=True)
    expect_error(db, user, "import_project", 422, "invalid_import_payload", project_id=pid,
                 payload={"epics": [{"number": 1, "title": None}]}, merge=True)


def test_export_round_trips_through_import(db: psycopg.Connection) -> None:
    tenant_id, user, _orch, agent, pid = setup(db)
    as_call(db, user, "import_project", project_id=pid, payload=SPEC_EXAMPLE)
    exported = as_call(db, agent, "export_project", project_id=pid)
    assert exported["epics"][0]["stories"][0]["acceptance_criteria"] == [
        {"id": "AC-1", "description": "form validates"},
        {"id": "AC-2", "description": "email sent"}]
    assert exported["story_dependencies"] == [{"story": "1.2", "depends_on": "1.1"}]
    assert exported["epic_dependencies"] == [{"epic": 2, "depends_on": 1}]

    copy_id = as_call(db, user, "create_project", name="Copy", slug="copy")["id"]
    as_call(db, user, "import_project", project_id=copy_id, payload=exported)
    reexported = as_call(db, agent, "export_project", project_id=copy_id)
    assert {k: v for k, v in reexported.items() if k != "project"} == {
        k: v for k, v in exported.items() if k != "project"}
    # Merging an export into its own project is a no-op.
    same = as_call(db, user, "import_project", project_id=pid, payload=exported, merge=True)
    assert (same["import"]["stories_updated"], same["import"]["stories_created"],
            same["import"]["stories_orphaned"]) == (0, 0, [])


def test_a_full_size_import_is_accepted(db: psycopg.Connection) -> None:
    """500 epics x 10 stories, a dependency chain inside each epic: the limits themselves
    are accepted (the timing is measured in bench/bench_import.py, not asserted here)."""
    tenant_id, user, _orch, _agent, pid = setup(db)
    payload = {
        "epics": [{"number": e, "title": f"Epic {e}", "stories": [
            {"number": f"{e}.{s}", "title": f"Story {e}.{s}", "estimated_hours": 1,
             "acceptance_criteria": [{"criterion": "works"}, {"criterion": "tested"}]}
            for s in range(10)]} for e in range(500)],
        "story_dependencies": [{"story": f"{e}.{s}", "depends_on": f"{e}.{s - 1}"}
                               for e in range(500) for s in range(1, 10)],
        "epic_dependencies": [{"epic": e, "depends_on": e - 1} for e in range(1, 500)],
    }
    result = as_call(db, user, "import_project", project_id=pid, payload=payload)
    assert result["import"]["stories_created"] == 5000
    assert result["import"]["dependencies_created"] == 500 * 9 + 499
    assert count(db, "acceptance_criteria", tenant_id) == 10000
