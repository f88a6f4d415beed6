"""Helpers for the work-model tests: call api functions with named arguments as a key and
read the PostgREST-style errors they raise."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from loopctl.testing import Key, as_key


def call(conn: psycopg.Connection[Any], fn: str, /, **kwargs: Any) -> Any:
    """`select api.<fn>(name => value, ...)` on `conn` (already acting as some key)."""
    args = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder())
        for name in kwargs
    )
    values = [Jsonb(v) if isinstance(v, dict | list) else v for v in kwargs.values()]
    row = conn.execute(
        sql.SQL("select api.{}({})").format(sql.Identifier(fn), args), values
    ).fetchone()
    assert row is not None
    return row[0]


def as_call(conn: psycopg.Connection[Any], key: Key, fn: str, /, **kwargs: Any) -> Any:
    """One committed request of `key` calling api.<fn>."""
    with as_key(conn, key, commit=True):
        return call(conn, fn, **kwargs)


def parse_error(exc: psycopg.Error) -> tuple[int, dict[str, Any]]:
    assert exc.sqlstate == "PGRST", f"not a domain error: {exc.sqlstate} {exc}"
    body = json.loads(exc.diag.message_primary or "{}")
    status = json.loads(exc.diag.message_detail or "{}")["status"]
    return status, body


def expect_error(conn: psycopg.Connection[Any], key: Key, fn: str, http_status: int, code: str,
                 /, **kwargs: Any) -> dict[str, Any]:
    """Call as `key` (in a transaction that would commit) and expect a domain error."""
    with pytest.raises(psycopg.Error) as caught, as_key(conn, key, commit=True):
        call(conn, fn, **kwargs)
    got_status, body = parse_error(caught.value)
    assert (got_status, body["code"]) == (http_status, code), body
    return body


def count(admin: psycopg.Connection[Any], table: str, tenant_id: str) -> int:
    """Rows of one tenant in an app table (inspection as the superuser only)."""
    row = admin.execute(
        sql.SQL("select count(*) from app.{} where tenant_id = %s").format(sql.Identifier(table)),
        (tenant_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])
