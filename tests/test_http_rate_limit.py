"""Rate limit per key, shared by every gateway process: 300 requests spread over two
`loopctl serve` processes pass, the 301st gets 429 with Retry-After; other keys are not
affected; the tenant setting changes the limit."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from gateway_helpers import Client, error_code, serve

from loopctl.testing import ServerProcess, create_agent_key, create_tenant


@pytest.fixture(scope="module")
def servers(module_db: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with serve(module_db) as a, serve(module_db) as b:
        yield a, b


def test_301st_request_in_a_minute_is_refused_across_two_processes(
        servers: tuple[ServerProcess, ServerProcess], module_db: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        tenant = create_tenant(admin)
        bystander = create_agent_key(admin, tenant.id, "agent", "bystander")
    clients = [Client(s.base_url, tenant.user_key) for s in servers]
    remaining = []
    for i in range(300):
        r = clients[i % 2].get("/api/v1/me")
        assert r.status_code == 200, f"request {i + 1}: {r.text}"
        assert r.headers["x-ratelimit-limit"] == "300"
        remaining.append(int(r.headers["x-ratelimit-remaining"]))
    assert remaining == list(range(299, -1, -1))  # one budget, counted by both processes
    for client in clients:
        r = client.get("/api/v1/me")
        assert (r.status_code, error_code(r)) == (429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert r.json()["error"]["details"]["retry_after"] == int(r.headers["retry-after"])
    # The PostgREST surface shares the budget; another key of the tenant does not.
    assert clients[0].get("/rpc/whoami").status_code == 429
    assert Client(servers[1].base_url, bystander).get("/api/v1/me").status_code == 200


def test_tenant_setting_sets_the_limit(servers: tuple[ServerProcess, ServerProcess],
                                       module_db: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        tenant = create_tenant(admin, settings={"rate_limit_per_minute": 5})
    c = Client(servers[0].base_url, tenant.user_key)
    statuses = [c.get("/api/v1/me").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    # Failed requests count too: a key cannot probe for free.
    r = c.get("/api/v1/agents/not-a-uuid")
    assert r.status_code == 429
