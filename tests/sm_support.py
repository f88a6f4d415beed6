"""Set-up helpers for the state-machine tests: a project/epic/story graph inserted with the
superuser connection (the import API is another area's), and calls made as API keys."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from loopctl.testing import Key, as_key, create_agent_key, create_tenant


@dataclass
class World:
    tenant_id: str
    project_id: str
    epic_id: str
    user: Key
    implementer: Key
    reporter: Key
    orchestrator: Key


def make_project(db: psycopg.Connection[Any], tenant_id: str) -> tuple[str, str]:
    project_id, epic_id = str(uuid.uuid4()), str(uuid.uuid4())
    db.execute("insert into app.projects (tenant_id, id, name, slug) values (%s, %s, 'P', %s)",
               (tenant_id, project_id, f"p-{project_id[:8]}"))
    db.execute("insert into app.epics (tenant_id, id, project_id, number, title) "
               "values (%s, %s, %s, 1, 'Epic one')", (tenant_id, epic_id, project_id))
    return project_id, epic_id


def make_epic(db: psycopg.Connection[Any], w: World, number: int) -> str:
    epic_id = str(uuid.uuid4())
    db.execute("insert into app.epics (tenant_id, id, project_id, number, title) "
               "values (%s, %s, %s, %s, %s)",
               (w.tenant_id, epic_id, w.project_id, number, f"Epic {number}"))
    return epic_id


def make_story(db: psycopg.Connection[Any], w: World, number: str, *, epic_id: str | None = None,
               ac: int = 2, title: str | None = None) -> str:
    story_id = str(uuid.uuid4())
    db.execute("insert into app.stories (tenant_id, id, project_id, epic_id, number, title) "
               "values (%s, %s, %s, %s, %s, %s)",
               (w.tenant_id, story_id, w.project_id, epic_id or w.epic_id, number,
                title or f"Story {number}"))
    for i in range(ac):
        db.execute("insert into app.acceptance_criteria (tenant_id, story_id, ac_id, position, "
                   "description) values (%s, %s, %s, %s, %s)",
                   (w.tenant_id, story_id, f"AC-{i + 1}", i, f"criterion {i + 1}"))
    return story_id


def make_world(db: psycopg.Connection[Any], settings: dict[str, Any] | None = None) -> World:
    t = create_tenant(db, settings=settings)
    project_id, epic_id = make_project(db, t.id)
    return World(
        t.id, project_id, epic_id, t.user_key,
        create_agent_key(db, t.id, "agent", "implementer"),
        create_agent_key(db, t.id, "agent", "reporter"),
        create_agent_key(db, t.id, "orchestrator", "orchestrator"),
    )


@dataclass
class Reply:
    """What a gateway would send back: the HTTP status and the JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str | None:
        return self.body.get("code")

    @property
    def details(self) -> dict[str, Any]:
        return self.body.get("details") or {}


def call(db: psycopg.Connection[Any], key: Key, fn: str, commit: bool = True,
         **args: Any) -> Reply:
    """Call api.<fn>(name => value, ...) as `key`, mapping errors as the gateways do:
    PGRST errors carry their status; response.status overrides a normal result."""
    names = ", ".join(f"{name} => %({name})s" for name in args)
    # JSON arguments as jsonb; *_ids arguments are uuid arrays.
    params = {k: (Jsonb(v) if isinstance(v, dict | list) and not k.endswith("_ids") else v)
              for k, v in args.items()}
    try:
        with as_key(db, key, commit=commit) as c:
            body = c.execute(f"select api.{fn}({names})", params).fetchone()[0]
            status = c.execute("select current_setting('response.status', true)").fetchone()[0]
    except psycopg.Error as exc:
        if exc.diag.sqlstate != "PGRST":
            raise
        return Reply(json.loads(exc.diag.message_detail or "{}")["status"],
                     json.loads(exc.diag.message_primary or "{}"))
    return Reply(int(status) if status else 200, body)


def story_row(db: psycopg.Connection[Any], story_id: str) -> dict[str, Any]:
    row = db.execute("select to_jsonb(s) from app.stories s where id = %s",
                     (story_id,)).fetchone()
    assert row is not None
    return row[0]


def events(db: psycopg.Connection[Any], story_id: str) -> list[str]:
    return [r[0] for r in db.execute(
        "select event_type from app.events where entity_id = %s order by id", (story_id,))]


def run_to_reported(db: psycopg.Connection[Any], w: World, story_id: str,
                    implementer: Key | None = None) -> None:
    """contract, claim, start by the implementer; report by the reporter."""
    impl = implementer or w.implementer
    for fn, key, args in (
        ("contract_story", impl, {"story_title": story_row(db, story_id)["title"],
                                  "ac_count": ac_count(db, story_id)}),
        ("claim_story", impl, {}),
        ("start_story", impl, {}),
        ("report_story", w.reporter, {}),
    ):
        reply = call(db, key, fn, story_id=story_id, **args)
        assert reply.status == 200, (fn, reply)


def ac_count(db: psycopg.Connection[Any], story_id: str) -> int:
    row = db.execute("select count(*) from app.acceptance_criteria where story_id = %s",
                     (story_id,)).fetchone()
    assert row is not None
    return int(row[0])


def review(db: psycopg.Connection[Any], key: Key, story_id: str) -> Reply:
    return call(db, key, "review_complete", story_id=story_id, review_type="code_review",
                findings_count=1, fixes_count=1, summary="looks right")


def new_key_for_agent(db: psycopg.Connection[Any], tenant_id: str, agent_id: str,
                      role: str) -> Key:
    """A second key bound to an existing agent."""
    row = db.execute("select app.mint_key(%s, 'second key', %s, %s)",
                     (tenant_id, role, agent_id)).fetchone()
    assert row is not None
    return Key(row[0]["raw_key"], role, tenant_id, row[0]["id"], agent_id)


def dispatch_child(db: psycopg.Connection[Any], tenant_id: str, parent: Key, role: str) -> Key:
    """A dispatched sub-agent of `parent` (lineage [parent root, child]) and its key."""
    child_id = str(uuid.uuid4())
    db.execute(
        "insert into app.agents (tenant_id, id, name, lineage, parent_agent_id) "
        "select %s, %s, %s, a.lineage || %s::uuid, a.id from app.agents a "
        " where a.tenant_id = %s and a.id = %s",
        (tenant_id, child_id, f"child-{child_id[:8]}", child_id, tenant_id, parent.agent_id))
    return new_key_for_agent(db, tenant_id, child_id, role)


def create_key(db: psycopg.Connection[Any], tenant_id: str, role: str, name: str) -> Key:
    return create_agent_key(db, tenant_id, role, name)
