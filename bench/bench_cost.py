"""Usage reports per second through api.report_token_usage (validation, running totals,
budgets with threshold events, anomaly detection against peers) versus a plain INSERT of the
same rows into app.token_usage_reports, side by side on one throwaway PostgreSQL.

Both paths commit one transaction per report from one client, alternating in blocks so load
drift hits both. The audit trigger on token_usage_reports fires in both. Prints throughput,
latency percentiles and the ratio.

    PYTHONPATH=service .venv/bin/python bench/bench_cost.py [--reports N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from typing import Any

import psycopg

from loopctl.testing import Key, TestServer, create_agent_key, create_tenant

EPICS, STORIES_PER_EPIC, AGENTS, BLOCK = 5, 20, 4, 200
MODELS = ["sonnet", "opus", "haiku"]


def setup(db: psycopg.Connection[Any]) -> tuple[str, list[Key], list[tuple[str, str, str]]]:
    tenant = create_tenant(db, settings={"default_budget_millicents": 10**9})
    agents = [create_agent_key(db, tenant.id, "agent", f"worker-{i}") for i in range(AGENTS)]
    project = str(uuid.uuid4())
    db.execute("insert into app.projects (tenant_id, id, name, slug) values (%s, %s, 'B', 'b')",
               (tenant.id, project))
    stories: list[tuple[str, str, str]] = []
    for e in range(1, EPICS + 1):
        epic = str(uuid.uuid4())
        db.execute("insert into app.epics (tenant_id, id, project_id, number, title) "
                   "values (%s, %s, %s, %s, 'E')", (tenant.id, epic, project, e))
        for s in range(1, STORIES_PER_EPIC + 1):
            story = str(uuid.uuid4())
            db.execute("insert into app.stories (tenant_id, id, project_id, epic_id, number, "
                       "title, agent_status) values (%s, %s, %s, %s, %s, 'S', 'implementing')",
                       (tenant.id, story, project, epic, f"{e}.{s}"))
            stories.append((story, epic, project))
    # Budgets on every level (warn: the bench measures the checks, not refusals).
    with db.transaction():
        db.execute("set local role loopctl_user")
        db.execute("select set_config('request.jwt.claims', %s, true)",
                   (json.dumps(tenant.user_key.claims),))
        db.execute("select api.set_token_budget('project', %s, 10000000000)", (project,))
        for _, epic, _ in stories[::STORIES_PER_EPIC]:
            db.execute("select api.set_token_budget('epic', %s, 2000000000)", (epic,))
        for a in agents:
            db.execute("select api.set_token_budget('agent', %s, null, 5000000000)",
                       (a.agent_id,))
        for story, _, _ in stories[::3]:
            db.execute("select api.set_token_budget('story', %s, 50000000)", (story,))
    return tenant.id, agents, stories


def api_report(db: psycopg.Connection[Any], key: Key, row: dict[str, Any]) -> None:
    with db.transaction():
        db.execute("select set_config('role', 'loopctl_agent', true), "
                   "set_config('request.jwt.claims', %s, true)", (json.dumps(key.claims),))
        db.execute("select api.report_token_usage(story_id => %(story)s, "
                   "input_tokens => %(inp)s, output_tokens => %(out)s, model_name => %(model)s, "
                   "cost_millicents => %(cost)s, phase => 'implement')", row)


def plain_insert(db: psycopg.Connection[Any], tenant_id: str, key: Key,
                 row: dict[str, Any]) -> None:
    rid = str(uuid.uuid4())
    with db.transaction():
        db.execute(
            "insert into app.token_usage_reports (tenant_id, id, story_id, project_id, epic_id, "
            "agent_id, key_id, input_tokens, output_tokens, model_name, cost_millicents, phase, "
            "root_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'implement', %s)",
            (tenant_id, rid, row["story"], row["project"], row["epic"], key.agent_id, key.id,
             row["inp"], row["out"], row["model"], row["cost"], rid))


def summary(name: str, latencies: list[float]) -> float:
    total = sum(latencies)
    q = statistics.quantiles(latencies, n=100)
    rate = len(latencies) / total
    print(f"{name:<44} {rate:>9.1f} reports/s   p50 {q[49] * 1000:6.2f} ms   "
          f"p95 {q[94] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000, help="reports per path")
    args = parser.parse_args()
    rng = random.Random(7)
    server = TestServer()
    t0 = time.monotonic()
    server.start()
    print(f"PostgreSQL ready and migrated in {time.monotonic() - t0:.1f}s")
    try:
        name, url = server.clone()
        with psycopg.connect(url, autocommit=True) as db:
            tenant_id, agents, stories = setup(db)
            rows = []
            for _ in range(args.reports):
                story, epic, project = rng.choice(stories)
                inp = rng.randint(500, 20000)
                rows.append({"story": story, "epic": epic, "project": project, "inp": inp,
                             "out": inp // 4, "model": rng.choice(MODELS),
                             "cost": inp // 3, "key": rng.randrange(AGENTS)})
            for r in rows[:50]:  # warm-up (plans, caches), not measured
                api_report(db, agents[r["key"]], r)
                plain_insert(db, tenant_id, agents[r["key"]], r)
            api_lat: list[float] = []
            plain_lat: list[float] = []
            for start in range(0, len(rows), BLOCK):
                for r in rows[start:start + BLOCK]:
                    t = time.perf_counter()
                    api_report(db, agents[r["key"]], r)
                    api_lat.append(time.perf_counter() - t)
                for r in rows[start:start + BLOCK]:
                    t = time.perf_counter()
                    plain_insert(db, tenant_id, agents[r["key"]], r)
                    plain_lat.append(time.perf_counter() - t)
            alerts = db.execute("select count(*) from app.events "
                                "where event_type like 'token.%'").fetchone()
            anomalies = db.execute("select count(*) from app.cost_anomalies").fetchone()
        server.drop_database(name)
        print(f"{args.reports} reports per path over {len(stories)} stories, {AGENTS} agents; "
              f"budgets on project, {EPICS} epics, {AGENTS} agents, {len(stories[::3])} stories")
        api_rate = summary("api.report_token_usage (budgets + anomalies)", api_lat)
        plain_rate = summary("plain INSERT (baseline)", plain_lat)
        print(f"ratio api/plain throughput: {api_rate / plain_rate:.2f} "
              f"(the API path is {plain_rate / api_rate:.1f}x slower per report)")
        print(f"events fired: {alerts[0] if alerts else 0}, "
              f"anomalies open: {anomalies[0] if anomalies else 0}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
