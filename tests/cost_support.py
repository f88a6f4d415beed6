"""Set-up helpers for the cost tests: projects, epics and stories written with the
superuser connection (set-up only; everything under test acts through API keys)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

from loopctl.testing import Key, as_key


@dataclass
class Work:
    """One project with epics and their stories (ids as strings)."""

    tenant_id: str
    project_id: str
    epics: list[str] = field(default_factory=list)
    stories: dict[str, list[str]] = field(default_factory=dict)  # epic id -> story ids


def make_work(admin: psycopg.Connection[Any], tenant_id: str, epics: int = 1,
              stories_per_epic: int = 3, agent_status: str = "implementing") -> Work:
    project_id = str(uuid.uuid4())
    slug = f"p-{project_id[:8]}"
    admin.execute("insert into app.projects (tenant_id, id, name, slug) values (%s, %s, %s, %s)",
                  (tenant_id, project_id, f"Project {slug}", slug))
    work = Work(tenant_id, project_id)
    for e in range(1, epics + 1):
        epic_id = str(uuid.uuid4())
        admin.execute(
            "insert into app.epics (tenant_id, id, project_id, number, title) "
            "values (%s, %s, %s, %s, %s)", (tenant_id, epic_id, project_id, e, f"Epic {e}"))
        work.epics.append(epic_id)
        work.stories[epic_id] = []
        for s in range(1, stories_per_epic + 1):
            story_id = str(uuid.uuid4())
            admin.execute(
                "insert into app.stories (tenant_id, id, project_id, epic_id, number, title, "
                "agent_status) values (%s, %s, %s, %s, %s, %s, %s)",
                (tenant_id, story_id, project_id, epic_id, f"{e}.{s}", f"Story {e}.{s}",
                 agent_status))
            work.stories[epic_id].append(story_id)
    return work


def call(conn: psycopg.Connection[Any], key: Key, fn: str, commit: bool = True,
         **args: Any) -> Any:
    """Call api.<fn>(named args) as `key`; returns the jsonb result."""
    names = ", ".join(f"\"{k}\" => %({k})s" for k in args)
    params = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in args.items()}
    with as_key(conn, key, commit=commit) as c:
        row = c.execute(f"select api.{fn}({names})", params).fetchone()
    assert row is not None
    return row[0]


def report(conn: psycopg.Connection[Any], key: Key, story_id: str, input_tokens: int = 1000,
           output_tokens: int = 500, model: str = "sonnet", cost: int = 100,
           commit: bool = True, **extra: Any) -> dict[str, Any]:
    return call(conn, key, "report_token_usage", commit=commit, story_id=story_id,
                input_tokens=input_tokens, output_tokens=output_tokens, model_name=model,
                cost_millicents=cost, **extra)


def error_of(exc: psycopg.Error) -> tuple[int, dict[str, Any]]:
    """(HTTP status, error body) of an app.raise_error exception."""
    diag = exc.diag
    assert exc.sqlstate == "PGRST", f"not a domain error: {exc!r}"
    body = json.loads(diag.message_primary or "{}")
    status = json.loads(diag.message_detail or "{}")["status"]
    return int(status), body


def expect_error(conn: psycopg.Connection[Any], key: Key, fn: str,
                 **args: Any) -> tuple[int, dict[str, Any]]:
    """Call api.<fn> as `key`, expecting a domain error: (status, body)."""
    try:
        call(conn, key, fn, commit=False, **args)
    except psycopg.Error as exc:
        return error_of(exc)
    raise AssertionError(f"api.{fn} succeeded; an error was expected")


def scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def written_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Row counts of everything a usage report can write (superuser view, all tenants)."""
    return {t: int(scalar(conn, f"select count(*) from app.{t}"))
            for t in ("token_usage_reports", "cost_totals", "budget_alerts", "cost_anomalies",
                      "events")}
