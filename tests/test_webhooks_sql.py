"""Webhooks in SQL (SPEC §10): subscriptions through the api functions as real keys, fan-out
from the outbox, claiming, the retry decision, replay and tenant isolation."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import psycopg
import pytest

from loopctl.testing import Key, as_key, create_agent_key, create_tenant

Conn = psycopg.Connection[Any]
SCHEDULE = [1.0, 5.0, 25.0]


def allow_private(db: Conn, value: bool = True) -> None:
    db.execute(f"alter database {db.info.dbname} set loopctl.webhooks_allow_private = "
               f"'{'true' if value else 'false'}'")


def call(db: Conn, key: Key, statement: str, params: tuple[Any, ...] = ()) -> Any:
    with as_key(db, key, commit=True) as c:
        row = c.execute(statement, params).fetchone()
    assert row is not None
    return row[0]


def api_error(db: Conn, key: Key, statement: str, params: tuple[Any, ...] = ()) -> tuple[int, str]:
    """(HTTP status, code) of the domain error the call raises; nothing is committed."""
    with pytest.raises(psycopg.Error) as info, as_key(db, key) as c:
        c.execute(statement, params)
    assert info.value.sqlstate == "PGRST", info.value
    body = json.loads(info.value.diag.message_primary or "{}")
    detail = json.loads(info.value.diag.message_detail or "{}")
    return int(detail["status"]), str(body["code"])


def create(db: Conn, key: Key, url: str = "http://127.0.0.1:9/hook",
           events: list[str] | None = None, project_id: str | None = None) -> dict[str, Any]:
    return call(db, key, "select api.create_webhook(%s, %s, %s)",
                (url, events or ["*"], project_id))


def emit(db: Conn, tenant_id: str, event_type: str, project_id: str | None = None,
         payload: dict[str, Any] | None = None) -> int:
    row = db.execute("select app.emit_event(%s, %s, %s::jsonb, %s, 'story', gen_random_uuid())",
                     (tenant_id, event_type, json.dumps(payload or {"n": 1}), project_id)
                     ).fetchone()
    assert row is not None
    return int(row[0])


def project(db: Conn, tenant_id: str, slug: str) -> str:
    row = db.execute("insert into app.projects (tenant_id, name, slug) values (%s, %s, %s) "
                     "returning id::text", (tenant_id, slug, slug)).fetchone()
    assert row is not None
    return str(row[0])


def deliveries(db: Conn, webhook_id: str) -> list[dict[str, Any]]:
    rows = db.execute("select to_jsonb(d) from app.webhook_deliveries d where webhook_id = %s "
                      "order by event_id, created_at", (webhook_id,)).fetchall()
    return [r[0] for r in rows]


def claim(db: Conn, limit: int = 10, lease: float = 30.0, worker: str = "w1") -> list[Any]:
    return db.execute("select * from app.webhook_claim(%s, %s, %s)",
                      (worker, limit, lease)).fetchall()


def record(db: Conn, row: Any, status: int | None, *, retry_after: float | None = None,
           schedule: list[float] = SCHEDULE, jitter: float = 0.0, disable_after: int = 3,
           worker: str = "w1") -> str:
    tenant_id, delivery_id, _webhook, attempt, token = row[:5]
    out = db.execute(
        "select app.webhook_record_attempt(%s, %s, %s, %s, %s, now(), 5, %s, %s, 'ok', %s, "
        "%s::double precision[], %s, %s)",
        (tenant_id, delivery_id, token, attempt, worker, status,
         None if status and 200 <= status < 300 else "HTTP error", retry_after, schedule,
         jitter, disable_after)).fetchone()
    assert out is not None
    return str(out[0])


# -- subscriptions ------------------------------------------------------------------------
def test_create_shows_secret_once_and_stores_it_out_of_the_audited_row(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key, events=["story.verified", "article.*", "story.verified"])
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"].removeprefix("whsec_"))) == 32
    assert hook["events"] == ["article.*", "story.verified"]  # de-duplicated, sorted
    listed = call(db, t.user_key, "select api.list_webhooks()")
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in call(db, t.user_key, "select api.get_webhook(%s)", (hook["id"],))
    row = db.execute("select secret from app.webhook_secrets where webhook_id = %s",
                     (hook["id"],)).fetchone()
    assert row is not None and row[0] == hook["secret"]
    # The audited subscription row never carries the secret.
    assert "secret" not in {c[0] for c in db.execute(
        "select column_name from information_schema.columns where table_schema = 'app' "
        "and table_name = 'webhooks'").fetchall()}
    leaked = db.execute("select count(*) from audit.entries where new_state::text like %s",
                        (f"%{hook['secret'][6:20]}%",)).fetchone()
    assert leaked is not None and leaked[0] == 0


@pytest.mark.parametrize(("url", "code"), [
    ("ftp://hooks.example.com/x", "invalid_webhook_url"),
    ("not a url", "invalid_webhook_url"),
    ("https://", "invalid_webhook_url"),
    ("https://user:pw@hooks.example.com/x", "invalid_webhook_url"),
    ("https://hooks.example.com:70000/x", "invalid_webhook_url"),
    ("http://127.0.0.1:8080/x", "private_webhook_target"),
    ("http://localhost/x", "private_webhook_target"),
    ("http://api.localhost/x", "private_webhook_target"),
    ("http://10.1.2.3/x", "private_webhook_target"),
    ("http://192.168.0.10/x", "private_webhook_target"),
    ("http://169.254.169.254/latest/meta-data", "private_webhook_target"),
    ("http://[::1]:8000/x", "private_webhook_target"),
    ("http://[fe80::1]/x", "private_webhook_target"),
    ("http://[::ffff:127.0.0.1]/x", "private_webhook_target"),
    ("http://2130706433/x", "private_webhook_target"),
    ("http://0x7f.1/x", "private_webhook_target"),
])
def test_bad_and_private_urls_are_refused_by_default(db: Conn, url: str, code: str) -> None:
    t = create_tenant(db)
    assert api_error(db, t.user_key, "select api.create_webhook(%s, %s)", (url, ["*"])) \
        == (422, code)
    assert db.execute("select count(*) from app.webhooks").fetchone() == (0,)


def test_public_literal_address_is_accepted(db: Conn) -> None:
    t = create_tenant(db)
    hook = create(db, t.user_key, url="https://93.184.215.14/hooks")
    assert hook["status"] == "active"


def test_bad_event_lists_and_roles(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    url = "http://127.0.0.1:9/x"
    for events, code in [([], "invalid_events"), (["story.exploded"], "unknown_event"),
                         (["nosuch.*"], "unknown_event"), (["STORY.VERIFIED"], "unknown_event")]:
        assert api_error(db, t.user_key, "select api.create_webhook(%s, %s)", (url, events)) \
            == (422, code)
    assert api_error(db, t.user_key, "select api.create_webhook(%s, %s::text[])",
                     (url, None)) == (422, "invalid_events")
    orch = create_agent_key(db, t.id, "orchestrator", "orch")
    agent = create_agent_key(db, t.id, "agent", "impl")
    # Only user keys may execute the write functions at all (42501 -> HTTP 403); agent keys
    # may not read subscriptions either.
    for key, stmt in [(orch, "select api.create_webhook('http://127.0.0.1:9/x', array['*'])"),
                      (agent, "select api.create_webhook('http://127.0.0.1:9/x', array['*'])"),
                      (agent, "select api.list_webhooks()")]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, key) as c:
            c.execute(stmt)
    assert api_error(db, t.user_key, "select api.create_webhook(%s, %s, gen_random_uuid())",
                     (url, ["*"])) == (404, "project_not_found")
    # Family wildcards and future article event names are accepted.
    hook = create(db, t.user_key, url, ["story.*", "article.published", "token.budget_warning"])
    assert hook["events"] == ["article.published", "story.*", "token.budget_warning"]


def test_at_most_ten_per_tenant(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    other = create_tenant(db)
    for i in range(10):
        create(db, t.user_key, url=f"http://127.0.0.1:9/{i}")
    assert api_error(db, t.user_key, "select api.create_webhook(%s, %s)",
                     ("http://127.0.0.1:9/x", ["*"])) == (409, "webhook_limit_reached")
    create(db, other.user_key)  # the limit is per tenant


def test_update_and_delete(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    p = project(db, t.id, "p1")
    hook = create(db, t.user_key)
    upd = call(db, t.user_key, "select api.update_webhook(%s, events => %s, project_id => %s,"
               " status => 'disabled')", (hook["id"], ["epic.completed"], p))
    assert (upd["events"], upd["project_id"], upd["status"]) == (["epic.completed"], p, "disabled")
    upd = call(db, t.user_key, "select api.update_webhook(%s, clear_project => true, "
               "status => 'active')", (hook["id"],))
    assert (upd["project_id"], upd["status"], upd["disabled_reason"]) == (None, "active", None)
    assert api_error(db, t.user_key, "select api.update_webhook(%s, status => 'paused')",
                     (hook["id"],)) == (422, "invalid_status")
    assert api_error(db, t.user_key, "select api.update_webhook(%s, events => %s)",
                     (hook["id"], ["nope"])) == (422, "unknown_event")
    allow_private(db, False)
    assert api_error(db, t.user_key, "select api.update_webhook(%s, url => %s)",
                     (hook["id"], "http://10.0.0.1/")) == (422, "private_webhook_target")
    assert call(db, t.user_key, "select api.delete_webhook(%s)", (hook["id"],))["deleted"]
    assert api_error(db, t.user_key, "select api.delete_webhook(%s)", (hook["id"],)) \
        == (404, "webhook_not_found")


def test_allow_private_cannot_be_granted_by_a_session(db: Conn) -> None:
    t = create_tenant(db)
    with pytest.raises(psycopg.Error) as info, as_key(db, t.user_key) as c:
        c.execute("set local loopctl.webhooks_allow_private = 'true'")
        c.execute("select api.create_webhook('http://127.0.0.1:9/x', array['*'])")
    assert "private_webhook_target" in str(info.value)


# -- tenant isolation ---------------------------------------------------------------------
def test_another_tenants_webhook_is_not_found(db: Conn) -> None:
    allow_private(db)
    a, b = create_tenant(db), create_tenant(db)
    hook = create(db, a.user_key)
    emit(db, a.id, "story.verified")
    d = deliveries(db, hook["id"])[0]
    for stmt, params in [
        ("select api.get_webhook(%s)", (hook["id"],)),
        ("select api.update_webhook(%s, status => 'disabled')", (hook["id"],)),
        ("select api.delete_webhook(%s)", (hook["id"],)),
        ("select api.webhook_deliveries(%s)", (hook["id"],)),
        ("select api.test_webhook(%s)", (hook["id"],)),
        ("select api.replay_webhook(%s, %s)", (hook["id"], d["id"])),
    ]:
        assert api_error(db, b.user_key, stmt, params) == (404, "webhook_not_found"), stmt
    assert call(db, b.user_key, "select api.list_webhooks()") == []
    # B's own webhook cannot replay A's delivery either.
    hook_b = create(db, b.user_key)
    assert api_error(db, b.user_key, "select api.replay_webhook(%s, %s)",
                     (hook_b["id"], d["id"])) == (404, "delivery_not_found")
    # A's events never fan out to B's subscriptions.
    emit(db, a.id, "story.rejected")
    assert deliveries(db, hook_b["id"]) == []


def test_api_roles_cannot_reach_tables_or_worker_functions(db: Conn) -> None:
    t = create_tenant(db)
    for stmt in ["select * from app.webhooks", "select * from app.webhook_secrets",
                 "select * from app.webhook_claim('x', 10, 30)",
                 "select app.webhook_next_due()",
                 "update app.webhook_deliveries set status = 'succeeded'"]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, t.user_key) as c:
            c.execute(stmt)


# -- fan-out ------------------------------------------------------------------------------
def test_fan_out_follows_event_and_project_filters(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    p1, p2 = project(db, t.id, "p1"), project(db, t.id, "p2")
    everything = create(db, t.user_key, url="http://127.0.0.1:9/all")
    stories = create(db, t.user_key, url="http://127.0.0.1:9/s", events=["story.*"])
    verified_p1 = create(db, t.user_key, url="http://127.0.0.1:9/v", events=["story.verified"],
                         project_id=p1)
    disabled = create(db, t.user_key, url="http://127.0.0.1:9/off")
    call(db, t.user_key, "select api.update_webhook(%s, status => 'disabled')",
         (disabled["id"],))
    e1 = emit(db, t.id, "story.verified", p1)
    e2 = emit(db, t.id, "story.verified", p2)
    e3 = emit(db, t.id, "epic.completed", p1)
    e4 = emit(db, t.id, "story.rejected", None)

    def events_of(hook: dict[str, Any]) -> list[int]:
        return [d["event_id"] for d in deliveries(db, hook["id"])]

    assert events_of(everything) == [e1, e2, e3, e4]
    assert events_of(stories) == [e1, e2, e4]
    assert events_of(verified_p1) == [e1]
    assert events_of(disabled) == []
    d = deliveries(db, everything["id"])[0]
    assert d["status"] == "pending" and d["kind"] == "event"
    assert d["message_id"] == f"msg_{everything['id'].replace('-', '')}_{e1}"


def test_a_rolled_back_change_emits_nothing(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key)
    with db.transaction(force_rollback=True):
        emit(db, t.id, "story.verified")
        assert len(deliveries(db, hook["id"])) == 1  # visible inside the transaction
    with as_key(db, t.user_key) as c:  # an API call rolled back (as_key's default)
        c.execute("select api.test_webhook(%s)", (hook["id"],))
    assert deliveries(db, hook["id"]) == []
    assert db.execute("select count(*) from app.events").fetchone() == (0,)
    assert claim(db) == []


# -- claiming and the retry decision ------------------------------------------------------
def test_retry_schedule_exhaustion_and_disabling(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key)
    emit(db, t.id, "story.verified")
    t0 = time.time()
    row = claim(db)[0]
    assert row[3] == 1  # attempt number
    assert record(db, row, 500) == "failed"
    d = deliveries(db, hook["id"])[0]
    wait = d["next_attempt_at"]
    assert claim(db) == []  # not due yet
    got = db.execute("select extract(epoch from %s::timestamptz) - %s", (wait, t0)).fetchone()
    assert got is not None and 0.9 <= float(got[0]) <= 3.0  # schedule[0] = 1 s, no jitter
    # Retry-After longer than the schedule step wins.
    db.execute("update app.webhook_deliveries set next_attempt_at = now() where id = %s",
               (d["id"],))
    row = claim(db)[0]
    assert row[3] == 2
    assert record(db, row, 503, retry_after=120) == "failed"
    d = deliveries(db, hook["id"])[0]
    left = db.execute("select extract(epoch from %s::timestamptz - now())",
                      (d["next_attempt_at"],)).fetchone()
    assert left is not None and 110 <= float(left[0]) <= 121
    for expected_attempt, outcome in [(3, "failed"), (4, "exhausted")]:
        db.execute("update app.webhook_deliveries set next_attempt_at = now() where id = %s",
                   (d["id"],))
        row = claim(db)[0]
        assert row[3] == expected_attempt
        assert record(db, row, 500) == outcome
    d = deliveries(db, hook["id"])[0]
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("exhausted", 4, 500)
    attempts = db.execute("select attempt, status_code from app.webhook_attempts "
                          "where delivery_id = %s order by attempt", (d["id"],)).fetchall()
    assert attempts == [(1, 500), (2, 503), (3, 500), (4, 500)]
    w = call(db, t.user_key, "select api.get_webhook(%s)", (hook["id"],))
    assert (w["status"], w["consecutive_exhaustions"]) == ("active", 1)
    # Two more exhausted deliveries in a row disable the endpoint (threshold 3).
    for _ in range(2):
        emit(db, t.id, "story.verified")
        row = claim(db)[0]
        assert record(db, row, 500, schedule=[]) == "exhausted"
    w = call(db, t.user_key, "select api.get_webhook(%s)", (hook["id"],))
    assert (w["status"], w["consecutive_exhaustions"]) == ("disabled", 3)
    assert "exhausted" in w["disabled_reason"]
    # A disabled endpoint's pending deliveries wait; re-enabling resets the count.
    emit(db, t.id, "story.status_changed")  # not fanned out: disabled
    assert claim(db) == []
    call(db, t.user_key, "select api.update_webhook(%s, status => 'active')", (hook["id"],))
    w = call(db, t.user_key, "select api.get_webhook(%s)", (hook["id"],))
    assert (w["status"], w["consecutive_exhaustions"]) == ("active", 0)


def test_success_resets_the_exhaustion_count(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key)
    emit(db, t.id, "story.verified")
    assert record(db, claim(db)[0], 500, schedule=[]) == "exhausted"
    emit(db, t.id, "story.verified")
    assert record(db, claim(db)[0], 204) == "succeeded"
    w = call(db, t.user_key, "select api.get_webhook(%s)", (hook["id"],))
    assert w["consecutive_exhaustions"] == 0


def test_jitter_spreads_retries(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key)
    for _ in range(20):
        emit(db, t.id, "story.verified")
    for row in claim(db, limit=20):
        assert record(db, row, 500, schedule=[100.0], jitter=0.5) == "failed"
    waits = [float(r[0]) for r in db.execute(
        "select extract(epoch from next_attempt_at - updated_at) from app.webhook_deliveries "
        "where webhook_id = %s", (hook["id"],)).fetchall()]
    assert all(49 <= w <= 151 for w in waits)
    assert max(waits) - min(waits) > 10  # not all the same


def test_expired_lease_is_claimed_again_and_the_stale_worker_decides_nothing(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key)
    emit(db, t.id, "story.verified")
    first = claim(db, lease=0.2, worker="dead")[0]
    assert claim(db, worker="other") == []  # leased
    time.sleep(0.3)
    second = claim(db, worker="other")[0]
    assert (second[1], second[3]) == (first[1], 2)
    # The first worker was only slow: its late report is logged but changes nothing.
    assert record(db, first, 200, worker="dead") == "lease_lost"
    assert deliveries(db, hook["id"])[0]["status"] == "delivering"
    assert record(db, second, 200, worker="other") == "succeeded"
    log = db.execute("select attempt, worker, lease_held, status_code from app.webhook_attempts "
                     "order by attempt").fetchall()
    assert log == [(1, "dead", False, 200), (2, "other", True, 200)]


def test_concurrent_claims_never_share_a_delivery(fresh_db: str, db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    create(db, t.user_key)
    db.execute("select app.emit_event(%s, 'story.verified', '{}'::jsonb) "
               "from generate_series(1, 300)", (t.id,))
    claimed: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def run(name: str) -> None:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            start.wait()
            while rows := claim(conn, limit=7, worker=name):
                for row in rows:
                    claimed[name].append((str(row[1]), row[3]))
                    assert record(conn, row, 200, worker=name) == "succeeded"

    threads = [threading.Thread(target=run, args=(n,)) for n in claimed]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    everything = claimed["a"] + claimed["b"]
    assert len(everything) == 300
    assert len(set(everything)) == 300 and all(attempt == 1 for _, attempt in everything)
    assert claimed["a"] and claimed["b"]  # both really competed
    assert db.execute("select count(*) from app.webhook_deliveries where status = 'succeeded'"
                      ).fetchone() == (300,)


# -- test, replay, delivery log -----------------------------------------------------------
def test_test_event_goes_to_that_endpoint_only(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    a = create(db, t.user_key, url="http://127.0.0.1:9/a")
    b = create(db, t.user_key, url="http://127.0.0.1:9/b")
    d = call(db, t.user_key, "select api.test_webhook(%s)", (a["id"],))
    assert (d["event_type"], d["kind"], d["status"]) == ("webhook.test", "test", "pending")
    assert len(deliveries(db, a["id"])) == 1 and deliveries(db, b["id"]) == []
    call(db, t.user_key, "select api.update_webhook(%s, status => 'disabled')", (b["id"],))
    assert api_error(db, t.user_key, "select api.test_webhook(%s)", (b["id"],)) \
        == (409, "webhook_disabled")


def test_replay_one_delivery_or_everything_since(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key, events=["story.*"])
    emit(db, t.id, "story.verified")
    row = claim(db)[0]
    assert record(db, row, 200) == "succeeded"
    original = deliveries(db, hook["id"])[0]
    out = call(db, t.user_key, "select api.replay_webhook(%s, %s)", (hook["id"], original["id"]))
    assert out["replayed"] == 1
    replay = [d for d in deliveries(db, hook["id"]) if d["kind"] == "replay"][0]
    assert (replay["replay_of"], replay["message_id"], replay["status"]) == \
        (original["id"], original["message_id"], "pending")
    # While disabled, events are not fanned out; replay since a time catches up.
    since = db.execute("select now()").fetchone()[0]  # type: ignore[index]
    call(db, t.user_key, "select api.update_webhook(%s, status => 'disabled')", (hook["id"],))
    missed = [emit(db, t.id, "story.rejected") for _ in range(3)]
    emit(db, t.id, "epic.completed")  # not subscribed
    assert api_error(db, t.user_key, "select api.replay_webhook(%s, since => %s)",
                     (hook["id"], since)) == (409, "webhook_disabled")
    call(db, t.user_key, "select api.update_webhook(%s, status => 'active')", (hook["id"],))
    out = call(db, t.user_key, "select api.replay_webhook(%s, since => %s)", (hook["id"], since))
    assert out["replayed"] == 3
    replayed = {d["event_id"] for d in deliveries(db, hook["id"]) if d["kind"] == "replay"}
    assert set(missed) <= replayed
    for stmt, params in [
        ("select api.replay_webhook(%s)", (hook["id"],)),
        ("select api.replay_webhook(%s, %s, now())", (hook["id"], original["id"])),
        ("select api.replay_webhook(%s, since => now() + interval '1 day')", (hook["id"],)),
    ]:
        assert api_error(db, t.user_key, stmt, params) == (422, "invalid_replay"), stmt
    assert api_error(db, t.user_key, "select api.replay_webhook(%s, gen_random_uuid())",
                     (hook["id"],)) == (404, "delivery_not_found")


def test_delivery_log_lists_every_attempt(db: Conn) -> None:
    allow_private(db)
    t = create_tenant(db)
    hook = create(db, t.user_key)
    emit(db, t.id, "story.verified")
    assert record(db, claim(db)[0], 500) == "failed"
    db.execute("update app.webhook_deliveries set next_attempt_at = now()")
    assert record(db, claim(db)[0], 200) == "succeeded"
    orch = create_agent_key(db, t.id, "orchestrator", "orch")
    log = call(db, orch, "select api.webhook_deliveries(%s)", (hook["id"],))
    assert log["meta"] == {"limit": 50, "offset": 0, "total": 1, "has_more": False}
    (d,) = log["data"]
    assert d["status"] == "succeeded" and d["attempts"] == 2
    assert [(a["attempt"], a["status_code"]) for a in d["attempt_log"]] == [(1, 500), (2, 200)]
    for limit, offset in [(0, 0), (501, 0), (10, -1)]:
        assert api_error(db, t.user_key, "select api.webhook_deliveries(%s, %s, %s)",
                         (hook["id"], limit, offset)) == (422, "invalid_pagination")
