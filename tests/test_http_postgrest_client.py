"""The official PostgREST Python client (`postgrest` on PyPI) against loopctl's gateway:
a view with filters and ordering, an RPC call, and PostgREST-shaped errors."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from gateway_helpers import Client, serve
from postgrest import APIError, SyncPostgrestClient

from loopctl.testing import ServerProcess, Tenant, create_agent_key, create_tenant

IMPORT = {"epics": [
    {"number": 1, "title": "One", "stories": [
        {"number": f"1.{i}", "title": f"Story 1.{i}", "acceptance_criteria": []}
        for i in range(1, 6)]},
    {"number": 2, "title": "Two", "stories": [
        {"number": "2.1", "title": "Other epic", "acceptance_criteria": []}]}]}


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    with serve(module_db) as s:
        yield s


@pytest.fixture(scope="module")
def setup(server: ServerProcess, module_db: str) -> tuple[Tenant, str]:
    with psycopg.connect(module_db, autocommit=True) as admin:
        tenant = create_tenant(admin)
        other = create_tenant(admin)
    owner = Client(server.base_url, tenant.user_key)
    pid = owner.post("/api/v1/projects", json={"name": "P", "slug": "p"}).json()["data"]["id"]
    assert owner.post(f"/api/v1/projects/{pid}/import", json=IMPORT).status_code == 201
    # Another tenant's stories must never show up.
    o = Client(server.base_url, other.user_key)
    opid = o.post("/api/v1/projects", json={"name": "P", "slug": "p"}).json()["data"]["id"]
    assert o.post(f"/api/v1/projects/{opid}/import", json=IMPORT).status_code == 201
    return tenant, pid


def client(server: ServerProcess, raw_key: str) -> SyncPostgrestClient:
    return SyncPostgrestClient(server.base_url, schema="api", retry_enabled=False,
                               headers={"Authorization": f"Bearer {raw_key}"})


def test_view_with_filters_ordering_range_and_count(server: ServerProcess,
                                                    setup: tuple[Tenant, str]) -> None:
    tenant, pid = setup
    with client(server, tenant.user_key.raw) as pg:
        res = (pg.from_("stories").select("id,number,title,epic_number", count="exact")
               .eq("project_id", pid).eq("epic_number", 1).neq("number", "1.3")
               .order("number", desc=True).limit(3).execute())
        assert [r["number"] for r in res.data] == ["1.5", "1.4", "1.2"]
        assert set(res.data[0]) == {"id", "number", "title", "epic_number"}
        assert res.count == 4  # exact count of the filtered rows, beyond the limit
        res = (pg.from_("stories").select("number").in_("number", ["1.1", "2.1"])
               .order("number").execute())
        assert [r["number"] for r in res.data] == ["1.1", "2.1"]
        res = (pg.from_("stories").select("number").ilike("title", "%other%").execute())
        assert [r["number"] for r in res.data] == ["2.1"]
        res = (pg.from_("stories").select("number").is_("assigned_agent_id", "null")
               .gte("number", "1.4").order("number").range(0, 0).execute())
        assert [r["number"] for r in res.data] == ["1.4"]
        one = pg.from_("projects").select("slug").eq("id", pid).single().execute()
        assert one.data == {"slug": "p"}
        everything = pg.from_("stories").select("project_id").execute()
        assert {r["project_id"] for r in everything.data} == {pid}  # RLS: own tenant only


def test_rpc_call(server: ServerProcess, setup: tuple[Tenant, str]) -> None:
    tenant, pid = setup
    with client(server, tenant.user_key.raw) as pg:
        me = pg.rpc("whoami", {}).execute()
        assert me.data["tenant_id"] == tenant.id and me.data["role"] == "user"
        progress = pg.rpc("project_progress", {"project_id": pid}).execute()
        assert progress.data  # a JSON document for the project


def test_postgrest_shaped_errors(server: ServerProcess, module_db: str,
                                 setup: tuple[Tenant, str]) -> None:
    tenant, pid = setup
    with client(server, tenant.user_key.raw) as pg:
        with pytest.raises(APIError) as exc:
            pg.rpc("get_project", {"project_id": "not-a-uuid"}).execute()
        assert exc.value.code == "22P02"
        with pytest.raises(APIError) as exc:
            pg.rpc("no_such_function", {}).execute()
        assert exc.value.code == "PGRST202"
        with pytest.raises(APIError) as exc:
            pg.rpc("get_project", {"project_id": "00000000-0000-4000-8000-000000000000"}
                   ).execute()
        assert exc.value.code and exc.value.message  # the work model's 404 code
        with pytest.raises(APIError) as exc:
            pg.from_("stories").select("nope").execute()
        assert exc.value.code == "42703"
        with pytest.raises(APIError) as exc:
            pg.from_("stories").select("id").filter("number", "regex", "x").execute()
        assert exc.value.code == "PGRST100"
    with psycopg.connect(module_db, autocommit=True) as admin:
        agent = create_agent_key(admin, tenant.id, "agent", "pg-agent")
    with client(server, agent.raw) as pg, pytest.raises(APIError) as exc:
        pg.from_("api_keys").select("id").execute()  # not granted to agents
    assert exc.value.code == "42501"
    with client(server, "lc_" + "x" * 40) as pg, pytest.raises(APIError) as exc:
        pg.from_("stories").select("id").execute()
    assert exc.value.code == "invalid_api_key"
