"""Issue #3: the identity resolver every policy and function reuses."""

from __future__ import annotations

import psycopg

from loopctl.testing import as_api_role, as_key, create_agent_key, create_tenant, key_hash


def current(conn: psycopg.Connection) -> tuple:
    me = conn.execute("select api.whoami()").fetchone()[0]
    return me["tenant_id"], me["role"], me["agent_id"], me["lineage_root"]


def test_key_resolves_to_its_tenant_role_and_agent(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    with as_key(db, t.user_key):
        assert current(db) == (t.id, "user", None, None)
    with as_key(db, agent):
        assert current(db) == (t.id, "agent", agent.agent_id, agent.agent_id)


def test_unknown_revoked_expired_or_forged_keys_identify_nobody(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "a1")
    expired = create_agent_key(db, t.id, "agent", "a2", expires_at="2000-01-01")
    db.execute("update app.api_keys set revoked_at = now() where id = %s", (agent.id,))
    for claims in (agent.claims, expired.claims,
                   {"role": "loopctl_agent", "key_hash": key_hash("lc_guess")},
                   {"role": "loopctl_agent", "tenant_id": t.id, "key_id": agent.id},
                   {"role": "loopctl_agent", "key_hash": "not-hex"}):
        with as_api_role(db, "loopctl_agent", claims):
            assert current(db) == (None, None, None, None), claims


def test_a_key_cannot_run_under_a_more_privileged_role(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "a1")
    with as_api_role(db, "loopctl_user", agent.claims):
        assert current(db)[0] is None


def test_authenticate_maps_hash_to_claims(db: psycopg.Connection) -> None:
    t = create_tenant(db)
    db.execute("set role authenticator")
    try:
        claims = db.execute("select auth.authenticate(%s)",
                            (key_hash(t.user_key.raw),)).fetchone()[0]
        assert claims["role"] == "loopctl_user" and claims["tenant_id"] == t.id
        bad = db.execute("select auth.authenticate(%s)", (key_hash("lc_x"),)).fetchone()[0]
        assert bad == {"error": "invalid_api_key"}
    finally:
        db.execute("reset role")
