"""Every /api/v1 declaration loads (no path declared twice) and fits its SQL function in
the migrated schema: the function exists and takes every argument the route passes."""

from __future__ import annotations

from typing import Any

import psycopg

from loopctl.routes import all_routes


def test_every_declared_route_matches_an_existing_function(db: psycopg.Connection[Any]) -> None:
    rows = db.execute("""
        select p.proname, coalesce(p.proargnames, '{}')
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'api'""").fetchall()
    signatures: dict[str, set[str]] = {}
    for name, argnames in rows:
        signatures.setdefault(name, set()).update(argnames)
    problems = []
    for r in all_routes():
        assert r.summary, f"{r.method} {r.path} has no summary"
        args = signatures.get(r.function_name)
        if args is None:
            problems.append(f"{r.method} {r.path}: {r.function} does not exist")
            continue
        unknown = set(r.args) - args
        if unknown:
            problems.append(f"{r.method} {r.path}: {r.function} takes no {sorted(unknown)}")
    assert not problems, "\n".join(problems)
