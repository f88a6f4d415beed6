"""The product page's flow over real HTTP against `loopctl serve`: keys minted with the
CLI, agents registered, a project imported, stories listed, and a story driven through
contract, claim, start, request-review, report (by another agent), review-complete and
verify — with every gate refusal checked by status and code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from gateway_helpers import Client, error_code, serve

from loopctl.testing import ServerProcess


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    with serve(module_db) as s:
        yield s


def cli(db_url: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "loopctl.cli", *args, "--json"],
                          env=dict(os.environ, LOOPCTL_DATABASE_URL=db_url),
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.text}"
    return r.json()


def refused(r: Any, status: int, code: str) -> dict[str, Any]:
    assert (r.status_code, error_code(r)) == (status, code), \
        f"{r.request.method} {r.request.url}: {r.text}"
    return dict(r.json()["error"])


IMPORT = {
    "epics": [{"number": 1, "title": "Payments", "stories": [
        {"number": "1.1", "title": "Card form",
         "acceptance_criteria": [{"criterion": "validates the number"},
                                 {"id": "AC-2", "description": "shows errors inline"}]},
        {"number": "1.2", "title": "Receipts",
         "acceptance_criteria": [{"criterion": "emails a receipt"}]}]}],
    "story_dependencies": [{"story": "1.2", "depends_on": "1.1"}],
}


def test_cli_bootstrap_prints_the_raw_key_once_and_refuses_duplicates(
        module_db: str) -> None:
    t = cli(module_db, "tenant", "create", "--name", "Dup", "--slug", "dup-co",
            "--email", "ops@dup.example")
    assert t["api_key"]["raw_key"].startswith("lc_") and t["api_key"]["role"] == "user"
    proc = subprocess.run([sys.executable, "-m", "loopctl.cli", "tenant", "create", "--name",
                           "Dup", "--slug", "dup-co", "--email", "ops@dup.example"],
                          env=dict(os.environ, LOOPCTL_DATABASE_URL=module_db),
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1 and "taken" in proc.stderr
    k1 = cli(module_db, "key", "create", "--tenant", "dup-co", "--role", "agent",
             "--name", "a", "--agent", "worker")
    k2 = cli(module_db, "key", "create", "--tenant", "dup-co", "--role", "agent",
             "--name", "b", "--agent", "worker")
    assert k1["agent"]["created"] is True and k2["agent"]["created"] is False
    assert k1["agent"]["id"] == k2["agent"]["id"] == k2["api_key"]["agent_id"]


def test_product_flow_with_every_gate(server: ServerProcess, module_db: str) -> None:
    base = server.base_url
    tenant = cli(module_db, "tenant", "create", "--name", "Acme", "--slug", "acme-flow",
                 "--email", "ops@acme.example")
    owner = Client(base, tenant["api_key"]["raw_key"])

    def key(role: str, name: str) -> Client:
        made = cli(module_db, "key", "create", "--tenant", "acme-flow", "--role", role,
                   "--name", name)
        return Client(base, made["api_key"]["raw_key"])

    orch, impl, peer = key("orchestrator", "orch"), key("agent", "impl"), key("agent", "peer")
    # Agents register: each key is bound to a new agent identity.
    for client, name, kind in ((orch, "orch-1", "orchestrator"),
                               (impl, "impl-1", "implementer"),
                               (peer, "peer-1", "implementer")):
        agent = ok(client.post("/api/v1/agents/register",
                               json={"name": name, "agent_type": kind}), 201)["data"]
        assert agent["name"] == name
    refused(owner.post("/api/v1/agents/register", json={"name": "x"}), 403,
            "insufficient_role")

    project = ok(owner.post("/api/v1/projects", json={"name": "Checkout",
                                                      "slug": "checkout"}), 201)["data"]
    pid = project["id"]
    imported = ok(owner.post(f"/api/v1/projects/{pid}/import", json=IMPORT), 201)["data"]
    assert imported["import"]["stories_created"] == 2
    again = owner.post(f"/api/v1/projects/{pid}/import", json=IMPORT)
    assert again.status_code == 409, again.text

    listed = ok(impl.get("/api/v1/stories", params={"project_id": pid, "limit": 10}))
    assert listed["meta"]["limit"] == 10 and len(listed["data"]) == 2
    stories = {s["number"]: s for s in listed["data"]}
    s1, s2 = stories["1.1"]["id"], stories["1.2"]["id"]
    ready = ok(impl.get("/api/v1/stories/ready", params={"project_id": pid}))["data"]
    assert [s["number"] for s in ready] == ["1.1"]

    # contract: claim before contracting is a wrong-state 409; title/count must match.
    r = refused(impl.post(f"/api/v1/stories/{s1}/claim"), 409, "invalid_transition")
    assert r["details"]["current_agent_status"] == "pending"
    refused(impl.post(f"/api/v1/stories/{s1}/contract",
                      json={"story_title": "Card form", "ac_count": 1}), 422,
            "contract_mismatch")
    contracted = ok(impl.post(f"/api/v1/stories/{s1}/contract",
                              json={"story_title": "Card form", "ac_count": 2}))["data"]
    assert contracted["story"]["agent_status"] == "contracted"
    assert isinstance(contracted["next_actions"], list)

    # claim: the dependent story cannot be claimed while 1.1 is unverified.
    ok(impl.post(f"/api/v1/stories/{s2}/contract",
                 json={"story_title": "Receipts", "ac_count": 1}))
    refused(impl.post(f"/api/v1/stories/{s2}/claim"), 409, "dependencies_not_verified")
    refused(orch.post(f"/api/v1/stories/{s1}/claim"), 403, "insufficient_role")
    claimed = ok(impl.post(f"/api/v1/stories/{s1}/claim"))["data"]
    assert claimed["story"]["agent_status"] == "assigned"

    # start (alias start-work): only the assigned agent.
    refused(peer.post(f"/api/v1/stories/{s1}/start"), 403, "not_assigned_agent")
    assert ok(impl.post(f"/api/v1/stories/{s1}/start-work"))["data"]["story"][
        "agent_status"] == "implementing"
    ok(impl.post(f"/api/v1/stories/{s1}/request-review"))

    # report (alias report-done): never by the implementer; the peer may.
    refused(impl.post(f"/api/v1/stories/{s1}/report", json={}), 409, "self_report_blocked")
    reported = ok(peer.post(f"/api/v1/stories/{s1}/report-done", json={
        "artifact": {"artifact_type": "commit", "commit_sha": "4f2a9c1"}}))["data"]
    assert reported["story"]["agent_status"] == "reported_done"

    # verify needs a review completed after the report, and an orchestrator.
    refused(orch.post(f"/api/v1/stories/{s1}/verify", json={"result": "pass"}), 422,
            "review_not_conducted")
    refused(impl.post(f"/api/v1/stories/{s1}/review-complete",
                      json={"review_type": "code"}), 403, "insufficient_role")
    ok(orch.post(f"/api/v1/stories/{s1}/review-complete", json={
        "review_type": "code", "findings_count": 1, "fixes_count": 1, "disproved_count": 0,
        "summary": "one nit fixed"}), 201)
    refused(peer.post(f"/api/v1/stories/{s1}/verify", json={"result": "pass"}), 403,
            "insufficient_role")
    bad = orch.post(f"/api/v1/stories/{s1}/verify", json={"result": "maybe"})
    assert bad.status_code == 422, bad.text
    verified = ok(orch.post(f"/api/v1/stories/{s1}/verify",
                            json={"result": "pass", "summary": "criteria met"}))["data"]
    assert verified["story"]["verified_status"] == "verified"
    refused(orch.post(f"/api/v1/stories/{s1}/verify", json={"result": "pass"}), 409,
            "invalid_transition")

    # With 1.1 verified, 1.2 can be claimed now.
    ok(impl.post(f"/api/v1/stories/{s2}/claim"))
    history = ok(owner.get(f"/api/v1/stories/{s1}/history"))["data"]
    assert history, "the custody chain of the story is recorded"


def test_self_verify_through_a_dispatched_sub_agent_is_blocked(
        server: ServerProcess, module_db: str) -> None:
    """An orchestrator that dispatches a sub-agent is the same actor as it: it may not
    verify the sub-agent's work (lineage root), nor may the sub-agent report it."""
    base = server.base_url
    tenant = cli(module_db, "tenant", "create", "--name", "Sneaky", "--slug", "sneaky-co",
                 "--email", "ops@sneaky.example")
    owner = Client(base, tenant["api_key"]["raw_key"])
    orch_key = cli(module_db, "key", "create", "--tenant", "sneaky-co", "--role",
                   "orchestrator", "--name", "o", "--agent", "boss")
    peer_key = cli(module_db, "key", "create", "--tenant", "sneaky-co", "--role", "agent",
                   "--name", "p", "--agent", "peer")
    orch, peer = Client(base, orch_key["api_key"]["raw_key"]), Client(
        base, peer_key["api_key"]["raw_key"])
    dispatch = ok(orch.post("/api/v1/dispatches", json={"agent_name": "minion",
                                                         "ttl_seconds": 600}), 201)["data"]
    raw = dispatch.get("api_key", {}).get("raw_key") or dispatch.get("raw_key")
    assert raw, dispatch
    minion = Client(base, raw)
    pid = ok(owner.post("/api/v1/projects", json={"name": "S", "slug": "s"}), 201)["data"]["id"]
    ok(owner.post(f"/api/v1/projects/{pid}/import", json={"epics": [{"number": 1, "title": "E",
       "stories": [{"number": "1.1", "title": "T", "acceptance_criteria": []}]}]}), 201)
    sid = ok(owner.get("/api/v1/stories", params={"project_id": pid}))["data"][0]["id"]
    ok(minion.post(f"/api/v1/stories/{sid}/contract", json={"story_title": "T",
                                                             "ac_count": 0}))
    ok(minion.post(f"/api/v1/stories/{sid}/claim"))
    ok(minion.post(f"/api/v1/stories/{sid}/start"))
    refused(orch.post(f"/api/v1/stories/{sid}/report", json={}), 409, "self_report_blocked")
    ok(peer.post(f"/api/v1/stories/{sid}/report", json={}))
    refused(orch.post(f"/api/v1/stories/{sid}/review-complete",
                      json={"review_type": "code"}), 409, "self_review_blocked")
    ok(owner.post(f"/api/v1/stories/{sid}/review-complete", json={"review_type": "code"}),
       201)
    refused(orch.post(f"/api/v1/stories/{sid}/verify", json={"result": "pass"}), 409,
            "self_verify_blocked")
    # The bulk path applies the same gate per item.
    bulk = ok(orch.post("/api/v1/stories/bulk/verify", json={"story_ids": [sid]}))
    assert "self_verify_blocked" in json.dumps(bulk)
    assert ok(owner.get(f"/api/v1/stories/{sid}"))["data"]["verified_status"] != "verified"
