"""The gateway mechanism over real HTTP: authentication, request settings as PostgREST
sets them, error mapping, 501 for routes whose function has not landed, discovery, tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from gateway_helpers import Client, error_code, serve

from loopctl.gateway import pgrst_config
from loopctl.testing import ServerProcess, Tenant, create_agent_key, create_tenant


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    with serve(module_db) as s:
        yield s


@pytest.fixture(scope="module")
def tenant(module_db: str) -> Tenant:
    with psycopg.connect(module_db, autocommit=True) as admin:
        return create_tenant(admin)


def test_key_resolves_to_its_identity(server: ServerProcess, tenant: Tenant) -> None:
    r = Client(server.base_url, tenant.user_key).get("/api/v1/me")
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"tenant_id": tenant.id, "role": "user",
                                "key_id": tenant.user_key.id, "agent_id": None,
                                "lineage_root": None}
    assert int(r.headers["x-ratelimit-limit"]) == 300
    assert 0 <= int(r.headers["x-ratelimit-remaining"]) < 300
    assert int(r.headers["x-ratelimit-reset"]) > 0


@pytest.mark.parametrize("header, code", [
    (None, "unauthenticated"),
    ("Bearer lc_" + "A" * 40, "invalid_api_key"),
    ("Basic abc", "invalid_authorization"),
    ("Bearer not-a-key", "invalid_api_key"),
    ("Bearer a.b.c", "invalid_token"),
])
def test_missing_or_bad_credentials_are_401(server: ServerProcess, header: str | None,
                                            code: str) -> None:
    headers = {"Authorization": header} if header else {}
    r = httpx.get(server.base_url + "/api/v1/me", headers=headers)
    assert r.status_code == 401, r.text
    assert error_code(r) == code
    assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_and_expired_keys_are_refused(server: ServerProcess, module_db: str,
                                              tenant: Tenant) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        revoked = create_agent_key(admin, tenant.id, "agent")
        admin.execute("update app.api_keys set revoked_at = now() where id = %s",
                      (revoked.id,))
        expired = create_agent_key(admin, tenant.id, "agent")
        admin.execute("update app.api_keys set expires_at = now() - interval '1 s' "
                      "where id = %s", (expired.id,))
    for key, code in ((revoked, "api_key_revoked"), (expired, "api_key_expired")):
        r = Client(server.base_url, key).get("/api/v1/me")
        assert (r.status_code, error_code(r)) == (401, code)


def test_request_settings_reach_sql_as_postgrest_sets_them(
        server: ServerProcess, module_db: str, tenant: Tenant) -> None:
    # A throwaway read-only function in the api schema echoes what the request sees.
    with psycopg.connect(module_db, autocommit=True) as admin:
        admin.execute("""
          create or replace function api.echo_request() returns jsonb language sql stable as $$
            select jsonb_build_object(
              'role', current_user, 'claims', current_setting('request.jwt.claims')::jsonb,
              'headers', current_setting('request.headers')::jsonb,
              'method', current_setting('request.method'),
              'path', current_setting('request.path'),
              'read_only', current_setting('transaction_read_only'))
          $$;
          grant execute on function api.echo_request() to loopctl_user""")
    time.sleep(0.3)  # the schema cache is re-read on a miss at most 4 times a second
    c = Client(server.base_url, tenant.user_key)
    r = c.get("/rpc/echo_request", headers={"X-Trace": "t-1"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["role"] == "loopctl_user"
    assert seen["claims"]["key_hash"] == tenant.user_key.claims["key_hash"]
    assert seen["claims"]["tenant_id"] == tenant.id
    assert seen["headers"]["x-trace"] == "t-1"
    assert "authorization" not in seen["headers"]  # the credential is not forwarded
    assert (seen["method"], seen["path"]) == ("GET", "/rpc/echo_request")
    assert seen["read_only"] == "on"  # GET of a stable function runs READ ONLY
    r = c.post("/rpc/echo_request", json={})
    assert r.json()["read_only"] == "off" and r.json()["method"] == "POST"


def test_pgrst_custom_errors_and_sqlstates_map_to_statuses(
        server: ServerProcess, tenant: Tenant) -> None:
    c = Client(server.base_url, tenant.user_key)
    # api.get_agent raises PGRST 404 for an unknown id.
    r = c.get("/api/v1/agents/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404 and error_code(r) != "", r.text
    # A malformed uuid is 22P02 -> 400, never a 500.
    r = c.get("/api/v1/agents/not-a-uuid")
    assert (r.status_code, error_code(r)) == (400, "invalid_input")
    # The same through the PostgREST surface: the bare PostgREST body with the SQLSTATE.
    r = c.post("/rpc/get_agent", json={"agent_id": "not-a-uuid"})
    assert r.status_code == 400 and r.json()["code"] == "22P02"
    assert set(r.json()) == {"code", "message", "details", "hint"}
    # Unknown function or unknown argument: PostgREST's 404 PGRST202.
    r = c.post("/rpc/get_agent", json={"agent_id": None, "bogus": 1})
    assert (r.status_code, r.json()["code"]) == (404, "PGRST202")
    # Role refused by the function: 403 with the domain code.
    r = c.post("/api/v1/agents/register", json={"name": "x"})
    assert (r.status_code, error_code(r)) == (403, "insufficient_role")


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_body"),
    (b'{"name": "k"}', 422, "missing_field"),
    (b'{"name": "k", "role": "agent", "colour": "red"}', 422, "unknown_field"),
    (b'{"name": "k", "role": "agent", "expires_at": "yesterday-ish"}', 400, "invalid_input"),
])
def test_bad_input_is_a_clear_4xx_and_changes_nothing(
        server: ServerProcess, module_db: str, tenant: Tenant, body: bytes, status: int,
        code: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        before = admin.execute("select count(*) from app.api_keys").fetchone()
        r = httpx.post(server.base_url + "/api/v1/api_keys", content=body, headers={
            "Authorization": f"Bearer {tenant.user_key.raw}",
            "Content-Type": "application/json"})
        assert (r.status_code, error_code(r)) == (status, code), r.text
        assert admin.execute("select count(*) from app.api_keys").fetchone() == before


def test_error_response_commits_and_answers_the_error(
        server: ServerProcess, module_db: str, tenant: Tenant) -> None:
    # app.error_response: the function sets response.status >= 400 and its write is kept.
    with psycopg.connect(module_db, autocommit=True) as admin:
        admin.execute("""
          create table if not exists public.gw_attempts (n int);
          grant insert on public.gw_attempts to loopctl_user;
          create or replace function api.refuse_but_record() returns jsonb
          language plpgsql volatile as $$
          begin
            insert into public.gw_attempts values (1);
            perform set_config('response.headers', '{"X-Recorded": "yes"}', true);
            return app.error_response(409, 'self_verify_blocked', 'no', '{"a": 1}', 'h');
          end $$;
          grant usage on schema app to loopctl_user;
          grant execute on function app.error_response(integer, text, text, jsonb, text),
            api.refuse_but_record() to loopctl_user""")
        time.sleep(0.3)
        r = Client(server.base_url, tenant.user_key).post("/rpc/refuse_but_record", json={})
        assert r.status_code == 409, r.text
        assert r.json() == {"code": "self_verify_blocked", "message": "no",
                            "details": {"a": 1}, "hint": "h"}
        assert r.headers["x-recorded"] == "yes"
        assert admin.execute("select count(*) from public.gw_attempts").fetchone() == (1,)


def test_declared_route_without_its_function_answers_501(
        server: ServerProcess, module_db: str, tenant: Tenant) -> None:
    c = Client(server.base_url, tenant.user_key)
    assert c.get("/api/v1/dispatches").status_code == 200
    with psycopg.connect(module_db, autocommit=True) as admin:
        admin.execute("alter function api.list_dispatches() rename to list_dispatches_gone")
        try:
            time.sleep(0.3)  # past the minimum age of the schema cache
            r = c.get("/api/v1/dispatches")
            assert (r.status_code, error_code(r)) == (501, "not_implemented"), r.text
            listed = httpx.get(server.base_url + "/api/v1/routes").json()["data"]
            assert next(x for x in listed if x["path"] == "/api/v1/dispatches"
                        and x["method"] == "GET")["implemented"] is False
        finally:
            admin.execute("alter function api.list_dispatches_gone() rename to list_dispatches")
    time.sleep(0.3)  # the schema cache is re-read on a miss at most 4 times a second
    assert c.get("/api/v1/dispatches").status_code == 200


def test_discovery(server: ServerProcess) -> None:
    routes = httpx.get(server.base_url + "/api/v1/routes").json()["data"]
    paths = {(r["method"], r["path"]) for r in routes}
    assert ("POST", "/api/v1/agents/register") in paths
    wk = httpx.get(server.base_url + "/.well-known/loopctl").json()
    assert wk["api"]["openapi"] == "/api/v1/openapi.json"
    assert wk["postgrest"]["schemas"] == ["api"]


def test_token_exchange_gives_a_jwt_the_gateway_accepts(
        server: ServerProcess, tenant: Tenant) -> None:
    r = Client(server.base_url, tenant.user_key).post("/api/v1/auth/token",
                                                      json={"expires_in": 120})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    secret = pgrst_config.load().jwt_secret
    claims = jwt.decode(data["token"], secret, algorithms=["HS256"])
    assert claims["role"] == "loopctl_user"
    assert claims["key_hash"] == tenant.user_key.claims["key_hash"]
    assert claims["exp"] - claims["iat"] == 120
    me = Client(server.base_url, data["token"]).get("/api/v1/me")
    assert me.status_code == 200 and me.json()["data"]["key_id"] == tenant.user_key.id
    forged = jwt.encode(claims | {"role": "loopctl_orchestrator"}, "x" * 40, algorithm="HS256")
    assert Client(server.base_url, forged).get("/api/v1/me").status_code == 401
    r = Client(server.base_url, tenant.user_key).post("/api/v1/auth/token",
                                                      json={"expires_in": 10**6})
    assert (r.status_code, error_code(r)) == (422, "invalid_expires_in")


def test_token_of_a_revoked_key_stops_working(server: ServerProcess, module_db: str,
                                              tenant: Tenant) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        key = create_agent_key(admin, tenant.id, "agent")
        token = Client(server.base_url, key).post("/api/v1/auth/token").json()["data"]["token"]
        assert Client(server.base_url, token).get("/api/v1/me").status_code == 200
        admin.execute("update app.api_keys set revoked_at = now() where id = %s", (key.id,))
    r = Client(server.base_url, token).get("/api/v1/me")
    assert (r.status_code, error_code(r)) == (401, "api_key_revoked")


def test_gateway_connects_as_authenticator(server: ServerProcess, module_db: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        users = {row[0] for row in admin.execute(
            "select usename from pg_stat_activity where datname = current_database() "
            "and application_name <> 'psql'")}
    assert "authenticator" in users
