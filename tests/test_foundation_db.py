"""Issue #2: the migrated database — extensions, roles, privileges, harness isolation."""

from __future__ import annotations

import psycopg
import pytest

from loopctl.testing import as_api_role


def test_vector_distance_works(db: psycopg.Connection) -> None:
    row = db.execute("select '[1,2,3]'::vector <-> '[1,2,5]'::vector").fetchone()
    assert row[0] == pytest.approx(2.0)
    cos = db.execute("select '[1,0]'::vector <=> '[0,1]'::vector").fetchone()[0]
    assert cos == pytest.approx(1.0)


def test_plpython_runs_system_python(db: psycopg.Connection) -> None:
    db.execute("""
        create function pg_temp.py_sum(a int, b int) returns text language plpython3u as $$
        import sys
        return f"{a + b}:{sys.version_info.major}"
        $$""")
    assert db.execute("select pg_temp.py_sum(2, 40)").fetchone()[0] == "42:3"


def test_role_attributes(db: psycopg.Connection) -> None:
    rows = dict(
        (r[0], r[1:]) for r in db.execute(
            "select rolname, rolcanlogin, rolinherit, rolsuper, rolbypassrls from pg_roles "
            "where rolname like 'loopctl%' or rolname = 'authenticator'"
        )
    )
    assert rows["authenticator"] == (True, False, False, False)
    for role in ("loopctl_anon", "loopctl_user", "loopctl_orchestrator", "loopctl_agent",
                 "loopctl_owner", "loopctl_audit", "loopctl_analyst"):
        can_login, _inherit, is_super, bypass_rls = rows[role]
        assert (can_login, is_super, bypass_rls) == (False, False, False), role


def test_authenticator_can_become_api_roles_but_not_owners(db: psycopg.Connection) -> None:
    def member(role: str) -> bool:
        return db.execute("select pg_has_role('authenticator', %s, 'member')",
                          (role,)).fetchone()[0]

    for role in ("loopctl_anon", "loopctl_user", "loopctl_orchestrator", "loopctl_agent"):
        assert member(role), role
    for role in ("loopctl_owner", "loopctl_audit", "postgres"):
        assert not member(role), role
    # And no API role can become the audit owner either.
    for role in ("loopctl_user", "loopctl_orchestrator", "loopctl_agent", "loopctl_analyst"):
        assert not db.execute("select pg_has_role(%s, 'loopctl_audit', 'member')",
                              (role,)).fetchone()[0]


PUBLIC_EXECUTABLE_API_FUNCTIONS = """
select p.oid::regprocedure::text
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = 'api'
   and (p.proacl is null  -- null ACL means the default: EXECUTE for PUBLIC
        or exists (select 1 from aclexplode(p.proacl) a
                    where a.grantee = 0 and a.privilege_type = 'EXECUTE'))
"""


def test_no_api_function_is_executable_by_public(db: psycopg.Connection) -> None:
    assert db.execute(PUBLIC_EXECUTABLE_API_FUNCTIONS).fetchall() == []


@pytest.mark.parametrize("creator", ["loopctl_owner", "postgres"])
def test_new_api_functions_start_without_public_execute(
    db: psycopg.Connection, creator: str
) -> None:
    # The default privileges, not each function's author, keep PUBLIC out.
    with db.transaction(force_rollback=True):
        db.execute(f"set local role {creator}")
        db.execute("create function api.probe() returns int language sql as 'select 1'")
        db.execute("reset role")
        assert db.execute(PUBLIC_EXECUTABLE_API_FUNCTIONS).fetchall() == []
        with as_api_role(db, "loopctl_agent"), pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("select api.probe()")


def test_api_roles_cannot_touch_private_schemas(db: psycopg.Connection) -> None:
    for role in ("loopctl_anon", "loopctl_user", "loopctl_orchestrator", "loopctl_agent"):
        for schema in ("app", "audit", "sqitch"):
            ok = db.execute("select has_schema_privilege(%s, %s, 'usage')",
                            (role, schema)).fetchone()[0]
            assert not ok, (role, schema)


def test_each_test_gets_an_isolated_database(pg_server, fresh_db: str) -> None:
    other_name, other_url = pg_server.clone()
    try:
        with psycopg.connect(fresh_db, autocommit=True) as a, \
             psycopg.connect(other_url, autocommit=True) as b:
            a.execute("create table app.isolation_probe (x int)")
            seen = b.execute("select to_regclass('app.isolation_probe')").fetchone()[0]
            assert seen is None
            assert a.execute("select current_database()").fetchone()[0] != \
                   b.execute("select current_database()").fetchone()[0]
    finally:
        pg_server.drop_database(other_name)
