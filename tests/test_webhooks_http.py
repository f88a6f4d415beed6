"""Webhooks over real HTTP (/api/v1/webhooks, declared in loopctl/routes/webhooks.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from gateway_helpers import Client, error_code, serve

from loopctl.testing import Key, ServerProcess, Tenant, create_agent_key, create_tenant

PUBLIC = "https://93.184.215.14/hooks"  # a public literal address: no DNS needed


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    # No LOOPCTL_WEBHOOKS_ALLOW_PRIVATE: the installation default (refuse private targets).
    with serve(module_db) as s:
        yield s


@pytest.fixture(scope="module")
def tenants(module_db: str) -> tuple[Tenant, Tenant, Key]:
    with psycopg.connect(module_db, autocommit=True) as admin:
        a, b = create_tenant(admin), create_tenant(admin)
        agent = create_agent_key(admin, a.id, "agent", "impl-1")
    return a, b, agent


def test_subscription_lifecycle_over_http(server: ServerProcess,
                                          tenants: tuple[Tenant, Tenant, Key]) -> None:
    a, _, _ = tenants
    u = Client(server.base_url, a.user_key)
    r = u.post("/api/v1/webhooks", {"url": PUBLIC, "events": ["story.verified", "article.*"]})
    assert r.status_code == 201, r.text
    hook = r.json()["data"]
    assert hook["secret"].startswith("whsec_")
    r = u.get("/api/v1/webhooks")
    assert r.status_code == 200
    listed = r.json()["data"]
    assert hook["id"] in [h["id"] for h in listed] and all("secret" not in h for h in listed)
    r = u.call("PATCH", f"/api/v1/webhooks/{hook['id']}", {"events": ["story.*"]})
    assert r.status_code == 200 and r.json()["data"]["events"] == ["story.*"], r.text
    r = u.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert r.status_code == 202, r.text
    test_delivery = r.json()["data"]
    assert (test_delivery["event_type"], test_delivery["status"]) == ("webhook.test", "pending")
    r = u.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"limit": 10})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [d["id"] for d in page["data"]] == [test_delivery["id"]]
    assert page["meta"]["total"] == 1 and page["meta"]["limit"] == 10
    r = u.post(f"/api/v1/webhooks/{hook['id']}/replay", {"delivery_id": test_delivery["id"]})
    assert r.status_code == 202 and r.json()["data"]["replayed"] == 1, r.text
    r = u.post(f"/api/v1/webhooks/{hook['id']}/replay", {"since": "2000-01-01T00:00:00Z"})
    assert r.status_code == 202 and r.json()["data"]["replayed"] == 0, r.text
    r = u.call("DELETE", f"/api/v1/webhooks/{hook['id']}")
    assert r.status_code == 200 and r.json()["data"]["deleted"] is True
    assert u.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404


def test_bad_input_is_4xx_and_changes_nothing(server: ServerProcess,
                                              tenants: tuple[Tenant, Tenant, Key]) -> None:
    a, _, _ = tenants
    u = Client(server.base_url, a.user_key)
    before = len(u.get("/api/v1/webhooks").json()["data"])
    cases = [
        ({"url": "http://127.0.0.1:8080/x", "events": ["*"]}, 422, "private_webhook_target"),
        ({"url": "http://169.254.169.254/", "events": ["*"]}, 422, "private_webhook_target"),
        ({"url": "http://localhost/x", "events": ["*"]}, 422, "private_webhook_target"),
        ({"url": "gopher://x.example", "events": ["*"]}, 422, "invalid_webhook_url"),
        ({"url": PUBLIC, "events": ["story.teleported"]}, 422, "unknown_event"),
        ({"url": PUBLIC, "events": []}, 422, "invalid_events"),
        ({"url": PUBLIC, "events": ["*"], "project_id": str(uuid.uuid4())}, 404,
         "project_not_found"),
    ]
    for payload, status, code in cases:
        r = u.post("/api/v1/webhooks", payload)
        assert (r.status_code, error_code(r)) == (status, code), (payload, r.text)
    for payload in [{"events": ["*"]}, {"url": PUBLIC}, {"url": PUBLIC, "events": "story.*"},
                    {"url": PUBLIC, "events": ["*"], "project_id": "not-a-uuid"}]:
        r = u.post("/api/v1/webhooks", payload)
        assert 400 <= r.status_code < 500, (payload, r.status_code, r.text)
    hook = u.post("/api/v1/webhooks", {"url": PUBLIC, "events": ["*"]}).json()["data"]
    for payload in [{}, {"delivery_id": str(uuid.uuid4()), "since": "2026-01-01T00:00:00Z"}]:
        r = u.post(f"/api/v1/webhooks/{hook['id']}/replay", payload)
        assert (r.status_code, error_code(r)) == (422, "invalid_replay"), r.text
    r = u.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"limit": 0})
    assert 400 <= r.status_code < 500
    r = u.call("PATCH", f"/api/v1/webhooks/{hook['id']}", {"status": "paused"})
    assert r.status_code == 422
    assert len(u.get("/api/v1/webhooks").json()["data"]) == before + 1


def test_other_tenants_and_roles_are_refused(server: ServerProcess,
                                             tenants: tuple[Tenant, Tenant, Key]) -> None:
    a, b, agent = tenants
    hook = Client(server.base_url, a.user_key).post(
        "/api/v1/webhooks", {"url": PUBLIC, "events": ["*"]}).json()["data"]
    intruder = Client(server.base_url, b.user_key)
    for method, suffix, payload in [("GET", "", None), ("PATCH", "", {"status": "disabled"}),
                                    ("DELETE", "", None), ("GET", "/deliveries", None),
                                    ("POST", "/test", None),
                                    ("POST", "/replay", {"since": "2026-01-01T00:00:00Z"})]:
        r = intruder.call(method, f"/api/v1/webhooks/{hook['id']}{suffix}", payload)
        assert (r.status_code, error_code(r)) == (404, "webhook_not_found"), (method, suffix)
    assert hook["id"] not in [h["id"] for h in intruder.get("/api/v1/webhooks").json()["data"]]
    impl = Client(server.base_url, agent)
    assert impl.post("/api/v1/webhooks", {"url": PUBLIC, "events": ["*"]}).status_code == 403
    assert impl.get("/api/v1/webhooks").status_code == 403
    assert Client(server.base_url).get("/api/v1/webhooks").status_code == 401
