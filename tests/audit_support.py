"""Set-up helpers for the audit and change-feed tests.

Rows are written with the superuser connection (set-up). `acting_as` attributes a write to
a key exactly as an API function does: the request claims are set and the database role is
left alone (a SECURITY DEFINER function does not change it), so app.current_identity()
resolves the key inside the audit trigger.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from loopctl.testing import Key


@dataclass
class Story:
    tenant_id: str
    project_id: str
    epic_id: str
    id: str


def make_story(admin: psycopg.Connection[Any], tenant_id: str, project_id: str | None = None,
               number: str = "1.1") -> Story:
    """A project (unless given), an epic and one story, inserted by the superuser."""
    if project_id is None:
        project_id = str(uuid.uuid4())
        admin.execute(
            "insert into app.projects (tenant_id, id, name, slug) values (%s, %s, %s, %s)",
            (tenant_id, project_id, "Project", f"p-{project_id[:8]}"))
    epic_id, story_id = str(uuid.uuid4()), str(uuid.uuid4())
    admin.execute(
        "insert into app.epics (tenant_id, id, project_id, number, title) "
        "values (%s, %s, %s, (select coalesce(max(number), 0) + 1 from app.epics "
        "where tenant_id = %s and project_id = %s), 'Epic')",
        (tenant_id, epic_id, project_id, tenant_id, project_id))
    admin.execute(
        "insert into app.stories (tenant_id, id, project_id, epic_id, number, title) "
        "values (%s, %s, %s, %s, %s, 'Story')",
        (tenant_id, story_id, project_id, epic_id, number))
    return Story(tenant_id, project_id, epic_id, story_id)


@contextmanager
def acting_as(admin: psycopg.Connection[Any], key: Key, *, action: str | None = None,
              request_id: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    """One committed transaction whose writes are attributed to `key` (and `action`)."""
    with admin.transaction():
        admin.execute("select set_config('request.jwt.claims', %s, true)",
                      (json.dumps(key.claims),))
        if request_id is not None:
            admin.execute("select set_config('request.headers', %s, true)",
                          (json.dumps({"x-request-id": request_id}),))
        if action is not None:
            admin.execute("select set_config('loopctl.audit_action', %s, true)", (action,))
        yield admin


def entries(admin: psycopg.Connection[Any], tenant_id: str, after_id: int = 0
            ) -> list[dict[str, Any]]:
    """The tenant's audit entries after `after_id`, oldest first, as dicts."""
    cur = admin.execute(
        "select to_jsonb(e) from audit.entries e where tenant_id = %s and id > %s order by id",
        (tenant_id, after_id))
    return [r[0] for r in cur.fetchall()]


def last_entry_id(admin: psycopg.Connection[Any]) -> int:
    row = admin.execute("select coalesce(max(id), 0) from audit.entries").fetchone()
    assert row is not None
    return int(row[0])


def call(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def api_error(exc: psycopg.Error) -> tuple[int, str]:
    """(HTTP status, code) of a PostgREST-style error raised by app.raise_error."""
    diag = exc.diag
    assert diag.sqlstate == "PGRST", diag.message_primary
    body = json.loads(diag.message_primary or "{}")
    detail = json.loads(diag.message_detail or "{}")
    return int(detail["status"]), str(body["code"])
