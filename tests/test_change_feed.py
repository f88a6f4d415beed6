"""SPEC §6 change feed: a monotonic cursor (the chain seq) that never skips entries sharing
a timestamp nor entries committed later; ISO-8601 since; filters; limits; tenant isolation;
and the chain staying exact while many writers of one tenant commit at once."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest
from audit_support import acting_as, api_error, call, make_story

from loopctl.testing import Key, as_key, create_agent_key, create_tenant

Conn = psycopg.Connection[Any]


def feed(conn: Conn, key: Key, **args: Any) -> dict[str, Any]:
    named = ", ".join(f'"{name}" => %({name})s' for name in args)
    with as_key(conn, key, commit=True) as c:
        return call(c, f"select api.changes({named})", args)


def drain(conn: Conn, key: Key, since: str = "0", limit: int = 7,
          **filters: Any) -> tuple[list[dict[str, Any]], str]:
    """Every entry after `since`, page by page with next_cursor."""
    got: list[dict[str, Any]] = []
    while True:
        page = feed(conn, key, since=since, limit=limit, **filters)
        got += page["data"]
        since = str(page["next_cursor"])
        if not page["has_more"]:
            return got, since


def test_paging_with_next_cursor_returns_everything_once_in_order(db: Conn) -> None:
    t = create_tenant(db)
    story = make_story(db, t.id)
    for i in range(20):
        db.execute("update app.stories set description = %s where id = %s", (str(i), story.id))
    got, cursor = drain(db, t.user_key, limit=6)
    total = call(db, "select count(*) from audit.entries where tenant_id = %s", (t.id,))
    assert len(got) == total == 25
    assert [e["cursor"] for e in got] == list(range(1, 26))
    assert cursor == "25"
    last = got[-1]
    assert last["entity_type"] == "story" and last["new_state"]["description"] == "19"
    assert set(last) >= {"cursor", "id", "occurred_at", "action", "entity_type", "entity_id",
                         "project_id", "actor", "new_state"}
    # nothing new: an empty page that keeps the cursor
    empty = feed(db, t.user_key, since=cursor)
    assert empty == {"data": [], "has_more": False, "next_cursor": 25}


def test_entries_sharing_a_timestamp_are_never_skipped(db: Conn) -> None:
    t = create_tenant(db)
    story = make_story(db, t.id)
    for i in range(9):
        db.execute("update app.stories set description = %s where id = %s", (str(i), story.id))
    # Every entry at the same instant (a superuser rewrite before sealing): a timestamp
    # cursor with '>' would lose all but the first of a page boundary.
    db.execute("update audit.entries set occurred_at = '2026-01-01T00:00:00Z' "
               "where tenant_id = %s", (t.id,))
    got, _ = drain(db, t.user_key, limit=2)
    assert len(got) == 14 and len({e["id"] for e in got}) == 14
    assert {e["occurred_at"] for e in got} == {"2026-01-01T00:00:00+00:00"}
    assert call(db, "select audit.verify_chain(%s)", (t.id,))["ok"] is True


def test_iso_since_filters_by_time_then_pages_by_cursor(db: Conn) -> None:
    t = create_tenant(db)
    story = make_story(db, t.id)
    db.execute("update audit.entries set occurred_at = '2026-01-01T00:00:00Z' "
               "where tenant_id = %s", (t.id,))
    for i in range(3):
        db.execute("update app.stories set description = %s where id = %s", (str(i), story.id))
    for since in ("2026-06-01T00:00:00Z", "2026-06-01", "2026-06-01T02:00:00+02:00",
                  "2026-06-01 00:00:00.5+00"):
        page = feed(db, t.user_key, since=since)
        assert [e["action"] for e in page["data"]] == ["update"] * 3, since
    page = feed(db, t.user_key, since="2026-06-01T00:00:00Z", limit=2)
    assert page["has_more"] is True
    rest = feed(db, t.user_key, since=str(page["next_cursor"]))
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    assert feed(db, t.user_key, since="2025-12-31T23:59:59Z")["data"][0]["cursor"] == 1


@pytest.mark.parametrize("args", [
    {"limit": 0}, {"limit": 1001}, {"limit": -5},
    {"since": "yesterday"}, {"since": "-1"}, {"since": "2026-13-45"}, {"since": "1.5"},
    {"since": "now"}, {"since": "99999999999999999999"},
])
def test_bad_arguments_are_422(db: Conn, args: dict[str, Any]) -> None:
    t = create_tenant(db)
    with pytest.raises(psycopg.Error) as err:
        feed(db, t.user_key, **args)
    assert api_error(err.value)[0] == 422


def test_limit_bounds_are_inclusive(db: Conn) -> None:
    t = create_tenant(db)
    assert len(feed(db, t.user_key, limit=1)["data"]) == 1
    assert len(feed(db, t.user_key, limit=1000)["data"]) == 2


def test_filters_by_project_entity_type_and_action(db: Conn) -> None:
    t = create_tenant(db)
    s1 = make_story(db, t.id)
    s2 = make_story(db, t.id, number="2.1")  # another project
    agent = create_agent_key(db, t.id, "agent", "impl")
    with acting_as(db, agent, action="story.contract") as c:
        c.execute("update app.stories set agent_status = 'contracted' where id = %s", (s1.id,))
    db.execute("update app.stories set title = 'x' where id = %s", (s2.id,))

    by_project = feed(db, agent, project_id=s1.project_id)["data"]
    assert {e["project_id"] for e in by_project} == {s1.project_id}
    assert [e["entity_type"] for e in by_project] == ["project", "epic", "story", "story"]
    stories = feed(db, agent, entity_type="story")["data"]
    assert [(e["entity_id"], e["action"]) for e in stories] == [
        (s1.id, "insert"), (s2.id, "insert"), (s1.id, "story.contract"), (s2.id, "update")]
    contracted = feed(db, agent, action="story.contract")["data"]
    assert len(contracted) == 1 and contracted[0]["actor"]["agent_id"] == agent.agent_id
    assert contracted[0]["new_state"]["agent_status"] == "contracted"
    # a filter that matches nothing still advances the cursor to the head
    none = feed(db, agent, entity_type="no_such_thing")
    assert none["data"] == [] and none["next_cursor"] == feed(db, agent)["next_cursor"]


def test_deletes_carry_the_old_state(db: Conn) -> None:
    t = create_tenant(db)
    story = make_story(db, t.id)
    db.execute("delete from app.stories where id = %s", (story.id,))
    [gone] = feed(db, t.user_key, action="delete")["data"]
    assert gone["new_state"] is None and gone["old_state"]["id"] == story.id


def test_tenant_b_sees_nothing_of_tenant_a(db: Conn) -> None:
    a, b = create_tenant(db), create_tenant(db)
    story = make_story(db, a.id)
    for _ in range(3):
        db.execute("update app.stories set title = title || '!' where id = %s", (story.id,))
    got_b, _ = drain(db, b.user_key)
    assert {e["entity_id"] for e in got_b} == {b.id, b.user_key.id}
    assert feed(db, b.user_key, project_id=story.project_id)["data"] == []
    assert feed(db, b.user_key, since="2")["data"] == []  # B's own chain ends at 2
    got_a, _ = drain(db, a.user_key)
    assert len(got_a) == 8 and b.id not in {e["entity_id"] for e in got_a}


def test_every_role_may_read_the_feed_and_anonymous_may_not(db: Conn) -> None:
    t = create_tenant(db)
    for role in ("agent", "orchestrator"):
        key = create_agent_key(db, t.id, role)
        assert feed(db, key)["data"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
        db.execute("set local role loopctl_anon")
        db.execute("select api.changes()")


def test_concurrent_writers_sealer_and_reader(db: Conn, fresh_db: str) -> None:
    """8 writers of one tenant commit 50 changes each while a sealer and a paging reader
    run: the chain is gapless and verifies, every entry is sealed once, and the reader
    sees every entry exactly once."""
    writers, per_writer = 8, 50
    t = create_tenant(db)
    key = create_agent_key(db, t.id, "agent", "impl")
    project = make_story(db, t.id)
    stories = [project.id] + [make_story(db, t.id, project.project_id, f"{i}.1").id
                              for i in range(2, writers + 1)]
    done = threading.Event()  # writers finished: the sealer stops
    final = threading.Event()  # sealer stopped: the reader's own seal now links the rest
    errors: list[BaseException] = []
    seen: list[int] = []
    sealed_by_sealer: list[int] = []
    pages_during_writes: list[int] = []

    def write(story_id: str) -> None:
        try:
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                for i in range(per_writer):
                    with acting_as(conn, key, action="story.update") as c:
                        c.execute("update app.stories set description = %s where id = %s",
                                  (f"rev {i}", story_id))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def seal() -> None:
        try:
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                while not done.is_set():
                    sealed_by_sealer.append(call(conn, "select audit.seal_all()")["sealed"])
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def read() -> None:
        try:
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                cursor = "0"
                while True:
                    finished = final.is_set()  # read once more after everything stopped
                    page = feed(conn, key, since=cursor, limit=25)
                    seen.extend(e["id"] for e in page["data"])
                    if not done.is_set() and page["data"]:
                        pages_during_writes.append(len(page["data"]))
                    cursor = str(page["next_cursor"])
                    if finished and not page["has_more"]:
                        return
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stories]
    helpers = [threading.Thread(target=seal), threading.Thread(target=read)]
    for th in threads + helpers:
        th.start()
    for th in threads:
        th.join()
    done.set()
    helpers[0].join()
    final.set()
    helpers[1].join()
    assert errors == []
    # the three really interleaved
    assert sum(sealed_by_sealer) > 0 and len(pages_during_writes) > 1

    entry_ids = [r[0] for r in db.execute(
        "select id from audit.entries where tenant_id = %s order by id", (t.id,))]
    chain = db.execute("select seq, entry_id from audit.chain where tenant_id = %s order by seq",
                       (t.id,)).fetchall()
    assert len(entry_ids) >= writers * per_writer
    assert [s for s, _ in chain] == list(range(1, len(entry_ids) + 1))  # gapless
    assert sorted(e for _, e in chain) == entry_ids  # every entry sealed exactly once
    assert db.execute("select count(*) from audit.pending where tenant_id = %s",
                      (t.id,)).fetchone() == (0,)
    assert call(db, "select audit.verify_chain(%s)", (t.id,))["ok"] is True
    assert len(seen) == len(set(seen)), "the reader saw an entry twice"
    assert sorted(seen) == entry_ids, "the reader skipped entries"
    # the feed order is the chain order
    assert seen == [e for _, e in chain]


def test_reads_work_in_a_read_only_transaction(db: Conn) -> None:
    """A gateway may run GET requests read-only: readers then skip sealing, and what the
    worker sealed is served."""
    t = create_tenant(db)
    call(db, "select audit.seal_all()")
    story = make_story(db, t.id)
    with db.transaction(force_rollback=True):
        db.execute("set transaction read only")
        db.execute("set local role loopctl_user")
        db.execute("select set_config('request.jwt.claims', %s, true)",
                   (json.dumps(t.user_key.claims),))
        page = call(db, "select api.changes()")
        assert [e["cursor"] for e in page["data"]] == [1, 2]  # the 3 new ones are unsealed
        assert call(db, "select api.verify_audit_chain()")["data"]["unsealed"] == 3
        history = call(db, "select api.story_history(%s)", (story.id,))["data"]
        assert [(e["action"], e["seq"]) for e in history] == [("insert", None)]
    call(db, "select audit.seal_all()")
    assert len(feed(db, t.user_key)["data"]) == 5


def test_feed_history_and_verify_over_http(module_db: str) -> None:
    """The same contract through `loopctl serve`: list envelope with the cursor fields,
    422 for bad arguments, 403 for an agent at verify, the first broken link named."""
    from gateway_helpers import Client, error_code, serve

    with psycopg.connect(module_db, autocommit=True) as db:
        t = create_tenant(db)
        agent = create_agent_key(db, t.id, "agent", "impl-http")
        story = make_story(db, t.id)
        with serve(module_db) as server:
            user, impl = Client(server.base_url, t.user_key), Client(server.base_url, agent)
            seen: list[int] = []
            since = "0"
            while True:
                r = impl.get("/api/v1/changes", params={"since": since, "limit": 2})
                assert r.status_code == 200, r.text
                body = r.json()
                seen += [e["cursor"] for e in body["data"]]
                since = str(body["next_cursor"])
                if not body["meta"]["has_more"]:
                    break
            assert seen == list(range(1, 8))  # tenant, 2 keys, agent, project, epic, story
            for params in ({"limit": 0}, {"since": "yesterday"}):
                r = impl.get("/api/v1/changes", params=params)
                assert r.status_code == 422, r.text
            r = impl.get(f"/api/v1/stories/{story.id}/history")
            assert r.status_code == 200, r.text
            assert [e["action"] for e in r.json()["data"]] == ["insert"]
            assert impl.get("/api/v1/audit/verify").status_code == 403
            assert user.get("/api/v1/audit/verify").json()["data"]["ok"] is True
            db.execute("update audit.entries set action = 'forged' where entity_id = %s",
                       (story.id,))
            broken = user.get("/api/v1/audit/verify").json()["data"]["first_broken"]
            assert broken["reason"] == "entry_hash_mismatch" and broken["seq"] == 7
            r = user.get("/api/v1/audit", params={"entity_type": "story"})
            assert r.status_code == 200 and len(r.json()["data"]) == 1
            assert error_code(impl.get("/api/v1/audit")) == "insufficient_role"
