"""Issue #3: 20 agents claim one story at once, each on its own connection and committing:
exactly one wins, every other gets a clean 409 (no deadlock, no 5xx)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
from sm_support import Reply, call, make_story, make_world, review, run_to_reported, story_row

from loopctl.testing import Key, create_agent_key

AGENTS = 20


def test_twenty_concurrent_claims_one_winner(db: psycopg.Connection, fresh_db: str) -> None:
    w = make_world(db)
    sid = make_story(db, w, "1.1")
    assert call(db, w.implementer, "contract_story", story_id=sid, story_title="Story 1.1",
                ac_count=2).status == 200
    agents = [create_agent_key(db, w.tenant_id, "agent", f"racer-{i}") for i in range(AGENTS)]
    connections = [psycopg.connect(fresh_db, autocommit=True) for _ in agents]
    start = threading.Barrier(AGENTS)

    def claim(conn: psycopg.Connection, key: Key) -> Reply:
        conn.execute("set lock_timeout = '20s'")  # a deadlock or pile-up fails loudly
        start.wait()
        return call(conn, key, "claim_story", story_id=sid, commit=True)

    try:
        with ThreadPoolExecutor(AGENTS) as pool:
            replies = list(pool.map(claim, connections, agents))
    finally:
        for conn in connections:
            conn.close()

    winners = [key for key, r in zip(agents, replies, strict=True) if r.status == 200]
    losers = [r for r in replies if r.status != 200]
    assert len(winners) == 1
    assert len(losers) == AGENTS - 1
    for r in losers:
        assert (r.status, r.code) == (409, "invalid_transition")
        assert r.details["current_agent_status"] == "assigned"
    row = story_row(db, sid)
    assert row["agent_status"] == "assigned"
    assert row["assigned_agent_id"] == winners[0].agent_id
    claimed = db.execute("select count(*) from app.events where entity_id = %s "
                         "and event_type = 'story.claimed'", (sid,)).fetchone()[0]
    assert claimed == 1


def test_concurrent_verifies_of_an_epic_announce_completion_once(
        db: psycopg.Connection, fresh_db: str) -> None:
    """The last stories of an epic verified at the same moment by different orchestrators:
    epic.completed is emitted exactly once (neither lost nor doubled), with no deadlock."""
    w = make_world(db)
    stories = [make_story(db, w, f"1.{i}") for i in range(6)]
    for sid in stories:
        run_to_reported(db, w, sid)
        assert review(db, w.user, sid).status == 201
    verifiers = [create_agent_key(db, w.tenant_id, "orchestrator", f"verifier-{i}")
                 for i in range(len(stories))]
    connections = [psycopg.connect(fresh_db, autocommit=True) for _ in stories]
    start = threading.Barrier(len(stories))

    def verify(conn: psycopg.Connection, key: Key, sid: str) -> Reply:
        conn.execute("set lock_timeout = '20s'")
        start.wait()
        return call(conn, key, "verify_story", story_id=sid, result="pass", commit=True)

    try:
        with ThreadPoolExecutor(len(stories)) as pool:
            replies = list(pool.map(verify, connections, verifiers, stories))
    finally:
        for conn in connections:
            conn.close()
    assert [r.status for r in replies] == [200] * len(stories)
    assert sum(r.body["epic_completed"] for r in replies) == 1
    completed = db.execute("select count(*) from app.events "
                           "where event_type = 'epic.completed'").fetchone()[0]
    assert completed == 1
