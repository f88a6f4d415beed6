"""Issue #3: structural tenancy — forced RLS everywhere, keys that carry the tenant,
analyst logins that see only their tenant whatever they set."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from loopctl.testing import create_agent_key, create_tenant, with_dbname


def test_every_table_has_forced_rls_and_a_policy(db: psycopg.Connection) -> None:
    rows = db.execute("""
        select n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity,
               exists (select 1 from pg_policies p where p.schemaname = n.nspname
                         and p.tablename = c.relname and p.policyname = 'tenant_isolation')
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname in ('app', 'audit') and c.relkind in ('r', 'p')""").fetchall()
    assert len(rows) >= 15
    unprotected = [r[0] for r in rows if not (r[1] and r[2] and r[3])]
    assert unprotected == []


def test_every_key_leads_with_tenant_id(db: psycopg.Connection) -> None:
    offenders = db.execute("""
        select t.relname, c.conname from pg_constraint c
          join pg_class t on t.oid = c.conrelid join pg_namespace n on n.oid = t.relnamespace
         where n.nspname = 'app' and c.contype in ('p', 'f')
           and not (t.relname = 'tenants' and c.contype = 'p')
           and (select attname from pg_attribute
                 where attrelid = t.oid and attnum = c.conkey[1]) <> 'tenant_id'
    """).fetchall()
    assert offenders == []
    # and foreign keys reference (tenant_id, ...) on the other side too
    bad_refs = db.execute("""
        select t.relname, c.conname from pg_constraint c
          join pg_class t on t.oid = c.conrelid join pg_namespace n on n.oid = t.relnamespace
         where n.nspname = 'app' and c.contype = 'f'
           and (select attname from pg_attribute
                 where attrelid = c.confrelid and attnum = c.confkey[1]) not in ('tenant_id', 'id')
    """).fetchall()
    assert bad_refs == []


def test_a_row_cannot_reference_another_tenants_row(db: psycopg.Connection) -> None:
    a, b = create_tenant(db), create_tenant(db)
    a_agent = create_agent_key(db, a.id, "agent", "a-1")
    # Even a superuser write cannot bind tenant B's key to tenant A's agent: the FK carries
    # the tenant.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute("update app.api_keys set agent_id = %s where id = %s",
                   (a_agent.agent_id, b.user_key.id))


@pytest.fixture
def analyst(db: psycopg.Connection, fresh_db: str):
    t = create_tenant(db)
    name = f"analyst_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    db.execute("select app.create_analyst_role(%s, %s, %s)", (t.slug, name, password))
    from urllib.parse import urlsplit

    parts = urlsplit(fresh_db)
    url = f"postgresql://{name}:{password}@{parts.hostname}:{parts.port}{parts.path}"
    yield t, url
    db.execute(f"drop owned by {name}")
    db.execute(f"drop role {name}")


def test_analyst_sees_only_its_tenant_whatever_it_sets(db, analyst) -> None:
    mine, url = analyst
    other = create_tenant(db)
    create_agent_key(db, mine.id, "agent", "mine-1")
    create_agent_key(db, other.id, "agent", "theirs-1")
    with psycopg.connect(url, autocommit=True) as conn:
        assert [r[0] for r in conn.execute("select name from api.agents")] == ["mine-1"]
        # Claims of the other tenant's admin key change nothing for an analyst login.
        conn.execute("select set_config('request.jwt.claims', %s, false)",
                     (json.dumps(other.user_key.claims),))
        assert [r[0] for r in conn.execute("select name from api.agents")] == ["mine-1"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select api.create_api_key('x', 'user')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("set role loopctl_user")


def test_analyst_role_name_and_password_are_validated(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    for name, pw in (("loopctl_evil", "x" * 20), ("postgres", "x" * 20), ("ok_name", "short")):
        with pytest.raises(psycopg.Error):
            db.execute("select app.create_analyst_role(%s, %s, %s)", (t.slug, name, pw))


def test_with_dbname_keeps_credentials() -> None:
    assert with_dbname("postgresql://u:p@h:1/a", "b") == "postgresql://u:p@h:1/b"
