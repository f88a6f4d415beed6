"""Issue #3: 20 agents claim one story at once, each on its own connection and committing:
exactly one wins, every other gets a clean 409 (no deadlock, no 5xx)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
from sm_support import Reply, call, make_story, make_world, story_row

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
