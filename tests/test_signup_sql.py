"""Issue #9: the signup rules as the database enforces them, whoever calls.

The service reaches these functions as `authenticator` (the gateway's login) or the admin
URL; API roles never can: no API call creates a tenant.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from loopctl.app import create_app
from loopctl.config import Settings
from loopctl.signup.softkey import SoftAuthenticator
from loopctl.testing import API_ROLES, as_api_role, as_key, create_tenant

SIGNUP_FUNCTIONS = [
    "auth.signup_begin(text,text,text,text)",
    "auth.signup_finish(bytea,bytea,bytea,bigint,text[],uuid,text,text)",
    "auth.burn_challenge(bytea)", "auth.signin_begin(text,text)",
    "auth.signin_credential(bytea)", "auth.signin_finish(bytea,bytea,bigint,text)",
    "auth.session_create_key(text,text,text,text,timestamptz)",
    "auth.add_authenticator_finish(text,bytea,bytea,bytea,bigint,text[],uuid,text)",
    "app.create_tenant(text,text,text,jsonb)",
]


def pgrst_code(exc: psycopg.Error) -> str:
    import json
    return str(json.loads(exc.diag.message_primary or "{}").get("code"))


def signup(conn: psycopg.Connection[Any], slug: str, addr: str = "198.51.100.1",
           credential_id: bytes | None = None) -> dict[str, Any]:
    """Begin and finish a signup in SQL (the signature check is the service's part)."""
    begun = conn.execute("select auth.signup_begin(%s, %s, %s, %s)",
                         (f"Org {slug}", slug, f"a@{slug}.example", addr)).fetchone()[0]
    from webauthn.helpers import base64url_to_bytes
    challenge = base64url_to_bytes(begun["challenge"])
    return conn.execute(
        "select auth.signup_finish(%s, %s, %s, 0, array['usb'], null, 'k', %s)",
        (challenge, credential_id or os.urandom(32), os.urandom(77), addr)).fetchone()[0]


def signin(conn: psycopg.Connection[Any], credential_id: bytes, count: int) -> dict[str, Any]:
    from webauthn.helpers import base64url_to_bytes
    begun = conn.execute("select auth.signin_begin(null, '198.51.100.1')").fetchone()[0]
    return conn.execute("select auth.signin_finish(%s, %s, %s, '198.51.100.1')",
                        (base64url_to_bytes(begun["challenge"]), credential_id, count)
                        ).fetchone()[0]


def test_no_api_role_can_reach_signup_or_create_a_tenant(db: psycopg.Connection) -> None:
    for role in API_ROLES:
        for fn in SIGNUP_FUNCTIONS:
            allowed = db.execute("select has_function_privilege(%s, %s, 'execute')",
                                 (role, fn)).fetchone()[0]
            assert not allowed, (role, fn)
        assert not db.execute("select has_schema_privilege(%s, 'auth', 'usage')",
                              (role,)).fetchone()[0]
        for table in ("webauthn_credentials", "webauthn_challenges", "browser_sessions"):
            assert not db.execute("select has_table_privilege(%s, %s, 'select,insert')",
                                  (role, f"app.{table}")).fetchone()[0]
    # And no function in the api schema inserts a tenant.
    assert db.execute("select count(*) from pg_proc p join pg_namespace n on"
                      " n.oid = p.pronamespace where n.nspname = 'api'"
                      " and p.prosrc ~* 'insert\\s+into\\s+app\\.tenants'").fetchone()[0] == 0
    t = create_tenant(db)
    with as_key(db, t.user_key) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("select auth.signup_begin('x', 'via-sql', 'a@b.example', '1.1.1.1')")


def test_the_gateway_login_role_runs_the_whole_path(db: psycopg.Connection) -> None:
    """authenticator (no API role) holds exactly what the service needs."""
    cred = os.urandom(32)
    with as_api_role(db, "authenticator", commit=True) as c:
        data = signup(c, "via-authenticator", credential_id=cred)
        session = data["session"]["token"]
        key = c.execute("select auth.session_create_key(%s, 'bot', 'agent', 'bot-1', null)",
                        (session,)).fetchone()[0]
        assert key["raw_key"].startswith("lc_")
        assert signin(c, cred, 1)["tenant"]["slug"] == "via-authenticator"
    assert db.execute("select count(*) from app.agents a join app.tenants t on t.id ="
                      " a.tenant_id where t.slug = 'via-authenticator'").fetchone()[0] == 1


def test_sign_count_must_move_forward(db: psycopg.Connection) -> None:
    cred = os.urandom(32)
    signup(db, "counter", credential_id=cred)
    # An authenticator without a counter (always 0) is accepted every time.
    signin(db, cred, 0)
    signin(db, cred, 0)
    signin(db, cred, 7)
    sessions = db.execute("select count(*) from app.browser_sessions").fetchone()[0]
    for count in (7, 6, 0):
        with pytest.raises(psycopg.Error) as err:
            signin(db, cred, count)
        assert pgrst_code(err.value) == "sign_count_regression"
    assert db.execute("select sign_count from app.webauthn_credentials where credential_id"
                      " = %s", (cred,)).fetchone()[0] == 7
    assert db.execute("select count(*) from app.browser_sessions").fetchone()[0] == sessions


def test_at_most_five_authenticators_whoever_inserts(db: psycopg.Connection) -> None:
    data = signup(db, "five-max")
    tenant_id = data["tenant"]["id"]
    insert = ("insert into app.webauthn_credentials (tenant_id, credential_id, public_key,"
              " user_handle, name) values (%s, %s, %s, '\\x01', 'spare')")
    for _ in range(4):
        db.execute(insert, (tenant_id, os.urandom(32), os.urandom(77)))
    with pytest.raises(psycopg.Error) as err:
        db.execute(insert, (tenant_id, os.urandom(32), os.urandom(77)))
    assert pgrst_code(err.value) == "too_many_authenticators"


def test_challenges_are_single_use_and_bound_to_their_purpose(db: psycopg.Connection) -> None:
    from webauthn.helpers import base64url_to_bytes
    begun = db.execute("select auth.signup_begin('Org', 'single-use', 'a@b.example',"
                       " '198.51.100.1')").fetchone()[0]
    challenge = base64url_to_bytes(begun["challenge"])
    # A signup challenge does not open a sign-in.
    cred = os.urandom(32)
    signup(db, "other-tenant", credential_id=cred)
    with pytest.raises(psycopg.Error) as err:
        db.execute("select auth.signin_finish(%s, %s, 1, 'x')", (challenge, cred))
    assert pgrst_code(err.value) == "challenge_unknown"
    finish = ("select auth.signup_finish(%s, %s, %s, 0, null, null, null, 'x')")
    db.execute(finish, (challenge, os.urandom(32), os.urandom(77)))
    with pytest.raises(psycopg.Error) as err:
        db.execute(finish, (challenge, os.urandom(32), os.urandom(77)))
    assert pgrst_code(err.value) == "challenge_used"
    assert db.execute("select count(*) from app.tenants where slug = 'single-use'"
                      ).fetchone()[0] == 1


def test_challenge_and_session_tables_stay_out_of_the_audit_trail(
        db: psycopg.Connection) -> None:
    comments = dict(db.execute(
        "select c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') from pg_class c"
        " where c.oid in ('app.webauthn_challenges'::regclass, 'app.browser_sessions'::regclass,"
        " 'app.signup_attempts'::regclass, 'app.webauthn_credentials'::regclass)").fetchall())
    assert all("[no-audit]" in comments[t] for t in
               ("webauthn_challenges", "browser_sessions", "signup_attempts"))
    assert "[no-audit]" not in comments["webauthn_credentials"]
    triggers = {r[0] for r in db.execute(
        "select tgrelid::regclass::text from pg_trigger where tgname = 'audit_record_change'"
        " and tgrelid::regclass::text like 'app.%%'")}
    assert "app.webauthn_credentials" in triggers
    assert not triggers & {"app.webauthn_challenges", "app.browser_sessions",
                           "app.signup_attempts"}


def test_any_domain_self_hosts_and_tls_makes_the_cookie_secure(fresh_db: str) -> None:
    """RP ID and origin are configuration: a deployment at https://loopctl.example."""
    settings = Settings(webauthn_rp_id="loopctl.example",
                        webauthn_origin="https://loopctl.example")
    app = create_app(settings, fresh_db)
    origin = "https://loopctl.example"
    with TestClient(app, base_url=origin, headers={"Origin": origin}) as c:
        opts = c.post("/signup/options", json={"name": "Example", "slug": "example-org",
                                               "email": "a@b.example"}).json()["publicKey"]
        assert opts["rp"] == {"id": "loopctl.example", "name": "loopctl"}
        authn = SoftAuthenticator(origin=origin, rp_id="loopctl.example")
        # A localhost-scoped credential is refused by this deployment.
        wrong = SoftAuthenticator(origin=origin).create(opts)
        assert c.post("/signup/verify", json={"credential": wrong}).status_code == 400
        opts = c.post("/signup/options", json={"name": "Example", "slug": "example-org",
                                               "email": "a@b.example"}).json()["publicKey"]
        r = c.post("/signup/verify", json={"credential": authn.create(opts)})
        assert r.status_code == 201, r.text
        cookie = r.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert "https://loopctl.example/api/v1/me" in r.json()["next_steps"]["curl"]


@pytest.mark.parametrize(("trusted", "expected"), [("", "testclient"),
                                                   ("10.0.0.1", "testclient"),
                                                   ("10.0.0.1, testclient", "203.0.113.7")])
def test_rate_limit_address_honours_only_trusted_proxies(fresh_db: str, trusted: str,
                                                         expected: str) -> None:
    app = create_app(Settings(trusted_proxies=trusted), fresh_db)
    with TestClient(app) as c:
        r = c.post("/signin/options", json={},
                   headers={"X-Forwarded-For": "198.51.100.66, 203.0.113.7"})
        assert r.status_code == 200, r.text
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute("select client_addr from app.signup_attempts").fetchall()
    assert rows == [(expected,)]
