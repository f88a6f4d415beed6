"""Issue #3: API keys, agents, dispatch lineage, tenant settings — from the caller's side."""

from __future__ import annotations

import psycopg
import pytest

from loopctl.testing import Key, as_api_role, as_key, create_agent_key, create_tenant


def call(conn: psycopg.Connection, sql: str, *params):
    return conn.execute(sql, params).fetchone()[0]


def pgrst_error(exc: psycopg.Error) -> dict:
    """The {code, message, details, hint} body of a PGRST custom error."""
    import json

    assert exc.sqlstate == "PGRST", exc
    return json.loads(exc.diag.message_primary) | {
        "status": json.loads(exc.diag.message_detail)["status"]}


def expect_error(conn: psycopg.Connection, status: int, code: str, sql: str, *params) -> dict:
    # A savepoint, so one refusal does not abort the caller's whole transaction.
    with pytest.raises(psycopg.Error) as info, conn.transaction():
        conn.execute(sql, params)
    body = pgrst_error(info.value)
    assert (body["status"], body["code"]) == (status, code), body
    return body


def key_from(data: dict, tenant_id: str) -> Key:
    return Key(data["raw_key"], data["role"], tenant_id, data["id"], data.get("agent_id"))


def test_user_key_creates_keys_shown_once_and_they_work(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    with as_key(db, t.user_key, commit=True):
        created = call(db, "select api.create_api_key('ci-bot', 'agent')")
    assert created["raw_key"].startswith("lc_") and len(created["raw_key"]) == 43
    new = key_from(created, t.id)
    with as_key(db, new):
        assert call(db, "select api.whoami()")["role"] == "agent"
    with as_key(db, t.user_key):
        listed = call(db, "select api.list_api_keys()")
        assert all("raw_key" not in k and "key_hash" not in k for k in listed)
        assert {k["name"] for k in listed} == {"owner", "ci-bot"}
        rows = db.execute("select name, key_prefix from api.api_keys order by name").fetchall()
        assert rows == [("ci-bot", created["raw_key"][:8]), ("owner", t.user_key.raw[:8])]


@pytest.mark.parametrize("role", ["agent", "orchestrator"])
def test_only_user_keys_manage_keys(db: psycopg.Connection, role: str) -> None:
    t = create_tenant(db)
    k = create_agent_key(db, t.id, role, f"{role}-1")
    with as_key(db, k):
        expect_error(db, 403, "insufficient_role", "select api.create_api_key('x', 'user')")
    with as_key(db, k):
        expect_error(db, 403, "insufficient_role", "select api.revoke_api_key(%s)", t.user_key.id)
    with as_key(db, k), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("select * from api.api_keys")


def test_key_input_is_validated(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    with as_key(db, t.user_key):
        expect_error(db, 422, "invalid_role", "select api.create_api_key('x', 'superadmin')")
        expect_error(db, 422, "invalid_name", "select api.create_api_key('', 'agent')")
        expect_error(db, 422, "invalid_expiry",
                     "select api.create_api_key('x', 'agent', null, now() - interval '1 s')")
        expect_error(db, 404, "agent_not_found",
                     "select api.create_api_key('x', 'agent', gen_random_uuid())")
    assert db.execute("select count(*) from app.api_keys where tenant_id = %s",
                      (t.id,)).fetchone()[0] == 1


def test_revoke_and_rotate(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    with as_key(db, t.user_key, commit=True):
        rotated = call(db, "select api.rotate_api_key(%s)", agent.id)
    assert rotated["rotated_from"] == agent.id and rotated["agent_id"] == agent.agent_id
    new = key_from(rotated, t.id)
    with as_key(db, agent):
        assert call(db, "select api.whoami()")["tenant_id"] is None  # old secret is dead
    with as_key(db, new):
        assert call(db, "select api.whoami()")["agent_id"] == agent.agent_id
    with as_key(db, t.user_key, commit=True):
        call(db, "select api.revoke_api_key(%s)", new.id)
    with as_key(db, new):
        assert call(db, "select api.whoami()")["tenant_id"] is None
    with as_key(db, t.user_key):
        expect_error(db, 409, "api_key_revoked", "select api.rotate_api_key(%s)", new.id)


def test_register_agent_binds_a_key_once(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    with as_key(db, t.user_key, commit=True):
        raw = call(db, "select api.create_api_key('impl', 'agent')")
    k = key_from(raw, t.id)
    with as_key(db, k, commit=True):
        agent = call(db, "select api.register_agent('worker-1')")
    assert agent["agent_type"] == "implementer" and agent["lineage"] == [agent["id"]]
    with as_key(db, k):
        assert call(db, "select api.whoami()")["agent_id"] == agent["id"]
        # A second identity for the same key would let it escape the identity gates.
        expect_error(db, 409, "key_already_bound", "select api.register_agent('worker-1b')")
    other = create_agent_key(db, t.id, "agent")
    with as_key(db, other):
        expect_error(db, 409, "agent_name_taken", "select api.register_agent('worker-1')")
    with as_key(db, t.user_key):
        expect_error(db, 403, "insufficient_role", "select api.register_agent('boss')")
    assert db.execute("select count(*) from app.events where tenant_id = %s "
                      "and event_type = 'agent.registered'", (t.id,)).fetchone()[0] == 1


def test_dispatch_child_shares_the_parent_lineage_root(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    orch = create_agent_key(db, t.id, "orchestrator", "orch-1")
    with as_key(db, orch, commit=True):
        d = call(db, "select api.create_dispatch(purpose => 'fix bug', ttl_seconds => 120)")
    child = key_from(d["api_key"], t.id)
    assert d["agent"]["lineage"] == [orch.agent_id, d["agent"]["id"]]
    with as_key(db, child):
        me = call(db, "select api.whoami()")
    assert me["lineage_root"] == orch.agent_id and me["agent_id"] == d["agent"]["id"]
    expires = db.execute("select expires_at - now() from app.api_keys where id = %s",
                         (child.id,)).fetchone()[0]
    assert 100 < expires.total_seconds() <= 120


def test_dispatch_refusals(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    orch = create_agent_key(db, t.id, "orchestrator", "orch-1")
    bare_orch = create_agent_key(db, t.id, "orchestrator")
    agent = create_agent_key(db, t.id, "agent", "impl-1")
    with as_key(db, orch):
        expect_error(db, 422, "invalid_ttl", "select api.create_dispatch(ttl_seconds => 59)")
        expect_error(db, 422, "invalid_ttl", "select api.create_dispatch(ttl_seconds => 14401)")
        expect_error(db, 404, "story_not_found",
                     "select api.create_dispatch(story_id => gen_random_uuid())")
    with as_key(db, bare_orch):
        expect_error(db, 403, "agent_identity_required", "select api.create_dispatch()")
    with as_key(db, agent):
        expect_error(db, 403, "insufficient_role", "select api.create_dispatch()")


def test_expired_dispatch_key_identifies_nobody(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    orch = create_agent_key(db, t.id, "orchestrator", "orch-1")
    with as_key(db, orch, commit=True):
        d = call(db, "select api.create_dispatch(ttl_seconds => 60)")
    db.execute("update app.api_keys set expires_at = now() - interval '1 s' where id = %s",
               (d["api_key"]["id"],))
    with as_key(db, key_from(d["api_key"], t.id)):
        assert call(db, "select api.whoami()")["tenant_id"] is None


def test_tenant_settings_are_validated(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    with as_key(db, t.user_key, commit=True):
        got = call(db, "select api.update_tenant_settings('{\"rate_limit_per_minute\": 50}')")
    assert got["settings"]["rate_limit_per_minute"] == 50
    assert got["settings"]["auto_reset_on_reject"] is True  # defaults fill the rest
    with as_key(db, t.user_key):
        body = expect_error(db, 422, "invalid_settings",
                            "select api.update_tenant_settings('{\"rate_limit_per_minute\": -1,"
                            " \"colour\": \"red\"}')")
        assert {b["setting"] for b in body["details"]["invalid"]} == {
            "rate_limit_per_minute", "colour"}


def test_other_tenants_ids_are_unknown(db: psycopg.Connection) -> None:
    a, b = create_tenant(db), create_tenant(db)
    a_agent = create_agent_key(db, a.id, "agent", "a-worker")
    with as_key(db, b.user_key):
        expect_error(db, 404, "api_key_not_found", "select api.revoke_api_key(%s)", a_agent.id)
        expect_error(db, 404, "api_key_not_found", "select api.rotate_api_key(%s)", a_agent.id)
        expect_error(db, 404, "agent_not_found",
                     "select api.create_api_key('x', 'agent', %s)", a_agent.agent_id)
        expect_error(db, 404, "agent_not_found", "select api.get_agent(%s)", a_agent.agent_id)
        assert db.execute("select count(*) from api.agents").fetchone()[0] == 0
        assert [k["id"] for k in call(db, "select api.list_api_keys()")] == [b.user_key.id]
        assert call(db, "select api.get_tenant()")["id"] == b.id
    assert db.execute("select revoked_at from app.api_keys where id = %s",
                      (a_agent.id,)).fetchone()[0] is None


@pytest.mark.parametrize("role", ["loopctl_user", "loopctl_orchestrator", "loopctl_agent",
                                  "loopctl_anon"])
def test_direct_sql_cannot_reach_private_tables(db: psycopg.Connection, role: str) -> None:
    t = create_tenant(db)
    claims = {"role": role, "key_hash": None}
    if role == "loopctl_user":
        claims = t.user_key.claims
    for stmt in ("select key_hash from app.api_keys",
                 "update app.api_keys set role = 'user'",
                 "insert into app.tenants (name, slug, email) values ('x', 'xx', 'a@b')",
                 "select app.mint_key(gen_random_uuid(), 'x', 'user')",
                 "select app.create_tenant('x', 'xyz', 'a@b')"):
        with as_api_role(db, role, claims), pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(stmt)


def test_a_key_role_is_immutable_even_for_its_owner_tenant(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    with as_key(db, t.user_key), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("update api.api_keys set role = 'user'")
