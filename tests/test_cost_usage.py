"""Token usage reports: validation, agent from the key, corrections, soft deletes."""

from __future__ import annotations

from typing import Any

import psycopg
from cost_support import call, make_work, report

from loopctl.testing import create_agent_key, create_tenant


def count_reports(db: psycopg.Connection[Any]) -> int:
    row = db.execute("select count(*) from app.token_usage_reports").fetchone()
    assert row is not None
    return int(row[0])


def test_report_records_agent_from_key_and_totals(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id)
    story = work.stories[work.epics[0]][0]
    out = report(db, agent, story, input_tokens=1200, output_tokens=300, cost=450,
                 phase="implement", tool_call_count=7)
    assert out["agent_id"] == agent.agent_id
    assert out["total_tokens"] == 1500
    usage = call(db, agent, "story_token_usage", story_id=story)
    assert usage["totals"] == {"reports": 1, "input_tokens": 1200, "output_tokens": 300,
                               "total_tokens": 1500, "cost_millicents": 450}
