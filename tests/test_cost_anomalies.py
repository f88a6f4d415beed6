"""Anomalies detected when usage is recorded: robust statistics against the story's peers."""

from __future__ import annotations

import statistics
from typing import Any

import psycopg
import pytest
from cost_support import call, expect_error, make_work, report, scalar

from loopctl.testing import as_key, create_agent_key, create_tenant

UNIFORM = [1000, 1040, 980, 1010, 995, 1025, 990, 1005]


def setup(db: psycopg.Connection[Any], peers: list[int],
          agent_status: str = "implementing") -> tuple[Any, Any, list[str]]:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id, stories_per_epic=len(peers) + 1, agent_status=agent_status)
    stories = work.stories[work.epics[0]]
    for story, cost in zip(stories, peers, strict=False):
        report(db, agent, story, cost=cost)
    return t, agent, stories


def anomalies(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("select story_id::text, anomaly_type, observed_millicents, "
                      "baseline_median, baseline_mad, peer_count "
                      "from app.cost_anomalies").fetchall()


def test_planted_outlier_is_flagged_once(db: psycopg.Connection[Any]) -> None:
    t, agent, stories = setup(db, UNIFORM[:7])
    out = report(db, agent, stories[7], cost=9000)
    assert [a["anomaly_type"] for a in out["anomalies"]] == ["high_cost"]
    [(story, kind, observed, median, mad, peers)] = anomalies(db)
    assert (story, kind, observed, peers) == (stories[7], "high_cost", 9000, 7)
    peer_costs = UNIFORM[:7]
    med = statistics.median(peer_costs)
    assert float(median) == med
    assert float(mad) == statistics.median(abs(x - med) for x in peer_costs)
    # Still anomalous after more usage: still one open anomaly, one event.
    report(db, agent, stories[7], cost=500)
    assert len(anomalies(db)) == 1
    assert scalar(db, "select count(*) from app.events "
                      "where event_type = 'token.anomaly_detected'") == 1


def test_uniform_population_flags_nothing(db: psycopg.Connection[Any]) -> None:
    setup(db, UNIFORM)
    assert anomalies(db) == []


def test_spread_population_is_not_flagged_by_ratio_alone(db: psycopg.Connection[Any]) -> None:
    """Twice the median but within 3.5 robust deviations of a widely spread population."""
    spread = [1000, 2000, 3000, 4000, 5000, 2500, 3500]
    _, agent, stories = setup(db, spread)
    report(db, agent, stories[7], cost=6500)
    assert anomalies(db) == []


def test_below_minimum_sample_flags_nothing(db: psycopg.Connection[Any]) -> None:
    _, agent, stories = setup(db, UNIFORM[:4])
    report(db, agent, stories[4], cost=90000)
    assert anomalies(db) == []
    # With one more peer (5, the minimum) the same outlier is flagged.
    _, agent2, stories2 = setup(db, UNIFORM[:5])
    report(db, agent2, stories2[5], cost=90000)
    assert [a[1] for a in anomalies(db)] == ["high_cost"]


def test_project_peers_when_the_epic_is_too_small(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "worker-1")
    work = make_work(db, t.id, epics=3, stories_per_epic=3)
    e1, e2, e3 = (work.stories[e] for e in work.epics)
    for story, cost in zip(e1 + e2, UNIFORM[:6], strict=True):
        report(db, agent, story, cost=cost)
    report(db, agent, e3[0], cost=20000)
    rows = db.execute("select peer_scope, peer_count from app.cost_anomalies").fetchall()
    assert rows == [("project", 6)]


def test_suspiciously_low_only_for_stories_reported_done(db: psycopg.Connection[Any]) -> None:
    t, agent, stories = setup(db, UNIFORM[:7])
    report(db, agent, stories[7], cost=10)  # implementing: cheap so far, not suspicious
    assert anomalies(db) == []
    db.execute("update app.stories set agent_status = 'reported_done' where id = %s",
               (stories[7],))
    out = report(db, agent, stories[7], cost=5)
    assert [a["anomaly_type"] for a in out["anomalies"]] == ["suspiciously_low"]


def test_list_and_resolve(db: psycopg.Connection[Any]) -> None:
    t, agent, stories = setup(db, UNIFORM[:7])
    report(db, agent, stories[7], cost=9000)
    [open_one] = call(db, agent, "list_cost_anomalies")
    assert open_one["story_id"] == stories[7] and open_one["resolved_at"] is None
    # Only user keys resolve: other roles cannot even execute the function.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, agent) as c:
        c.execute("select api.resolve_cost_anomaly(%s, 'fine')", (open_one["id"],))
    other = create_tenant(db)
    assert call(db, other.user_key, "list_cost_anomalies") == []
    assert expect_error(db, other.user_key, "resolve_cost_anomaly",
                        anomaly_id=open_one["id"])[0] == 404
    done = call(db, t.user_key, "resolve_cost_anomaly", anomaly_id=open_one["id"],
                note="big refactor, expected")
    assert done["resolved_by_key_id"] == t.user_key.id
    assert expect_error(db, t.user_key, "resolve_cost_anomaly",
                        anomaly_id=open_one["id"])[0] == 409
    assert call(db, agent, "list_cost_anomalies") == []
    assert [a["id"] for a in call(db, agent, "list_cost_anomalies", resolved=True)] \
        == [open_one["id"]]
    # Once resolved, a new deviation opens a new anomaly.
    report(db, agent, stories[7], cost=5000)
    assert len(call(db, agent, "list_cost_anomalies")) == 1
    assert expect_error(db, agent, "list_cost_anomalies", limit=0)[0] == 422
