"""Full story lifecycles per second through the SQL API, one tenant vs N tenants.

A lifecycle is the six custody calls of SPEC §5, each its own transaction made the way a
gateway makes it (SET LOCAL ROLE + request.jwt.claims, one api.* call): contract, claim and
start by the implementer, report by a second agent, review-complete and verify by an
orchestrator. N worker threads (one connection each, like N agents) run lifecycles for a
fixed time, all in one tenant, then each in its own tenant (the baseline: nothing shared).
Every thread works its own epic in both layouts, so the only difference is the tenant.
The ratio 1-tenant / N-tenants shows whether anything serialises a tenant (it should be
close to 1). Rounds alternate the order to cancel drift on a shared machine.

    .venv/bin/python bench/bench_lifecycle.py [--agents 8] [--seconds 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

from loopctl.testing import Key, TestServer, create_agent_key, create_tenant

STORIES_PER_WORKER = 600


@dataclass
class Worker:
    implementer: Key
    reporter: Key
    orchestrator: Key
    story_ids: list[str]
    done: int = 0
    latencies: list[float] = field(default_factory=list)
    error: str | None = None


def setup(admin: psycopg.Connection[Any], agents: int, shared_tenant: bool) -> list[Worker]:
    workers = []
    tenant_id = create_tenant(admin).id if shared_tenant else None
    for i in range(agents):
        tid = tenant_id or create_tenant(admin).id
        project_id, epic_id = str(uuid.uuid4()), str(uuid.uuid4())
        admin.execute("insert into app.projects (tenant_id, id, name, slug) "
                      "values (%s, %s, 'bench', %s)", (tid, project_id, f"bench-{i}"))
        admin.execute("insert into app.epics (tenant_id, id, project_id, number, title) "
                      "values (%s, %s, %s, %s, 'bench epic')", (tid, epic_id, project_id, i))
        rows = admin.execute(
            "insert into app.stories (tenant_id, project_id, epic_id, number, title) "
            "select %s, %s, %s, 's' || g, 'Story ' || g from generate_series(1, %s) g "
            "returning id::text", (tid, project_id, epic_id, STORIES_PER_WORKER)).fetchall()
        admin.execute(
            "insert into app.acceptance_criteria (tenant_id, story_id, ac_id, position, "
            "description) select tenant_id, id, 'AC-1', 0, 'works' from app.stories "
            "where epic_id = %s", (epic_id,))
        workers.append(Worker(
            create_agent_key(admin, tid, "agent", f"impl-{i}"),
            create_agent_key(admin, tid, "agent", f"reporter-{i}"),
            create_agent_key(admin, tid, "orchestrator", f"orch-{i}"),
            [r[0] for r in rows]))
    return workers


def api_call(conn: psycopg.Connection[Any], key: Key, sql: str, args: tuple[Any, ...]) -> None:
    with conn.transaction():
        conn.execute("select set_config('role', %s, true), "
                     "set_config('request.jwt.claims', %s, true)",
                     (key.db_role, json.dumps(key.claims)), prepare=True)
        body = conn.execute(sql, args, prepare=True).fetchone()[0]
    if "code" in body:  # a returned refusal (gate violation): never expected here
        raise RuntimeError(f"{sql}: {body}")


def lifecycle(conn: psycopg.Connection[Any], w: Worker, story_id: str, n: int) -> None:
    api_call(conn, w.implementer, "select api.contract_story(%s, %s, 1)",
             (story_id, f"Story {n}"))
    api_call(conn, w.implementer, "select api.claim_story(%s)", (story_id,))
    api_call(conn, w.implementer, "select api.start_story(%s)", (story_id,))
    api_call(conn, w.reporter, "select api.report_story(%s)", (story_id,))
    api_call(conn, w.orchestrator,
             "select api.review_complete(%s, 'code_review', 0, 0, 0, 'ok')", (story_id,))
    api_call(conn, w.orchestrator, "select api.verify_story(%s, 'pass')", (story_id,))


def run(url: str, workers: list[Worker], seconds: float) -> tuple[float, list[float]]:
    stop_at = threading.Event()
    ready = threading.Barrier(len(workers) + 1)

    def work(w: Worker) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            ready.wait()
            try:
                for n, story_id in enumerate(w.story_ids, start=1):
                    if stop_at.is_set():
                        return
                    t0 = time.perf_counter()
                    lifecycle(conn, w, story_id, n)
                    w.latencies.append(time.perf_counter() - t0)
                    w.done += 1
                w.error = "ran out of stories: raise STORIES_PER_WORKER"
            except Exception as exc:  # reported below, stops the run
                w.error = repr(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop_at.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    errors = [w.error for w in workers if w.error]
    if errors:
        raise SystemExit(f"benchmark failed: {errors[0]}")
    return sum(w.done for w in workers) / elapsed, [x for w in workers for x in w.latencies]


def measure(server: TestServer, agents: int, seconds: float, shared: bool) -> tuple[float, float,
                                                                                       float]:
    name, url = server.clone()
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            workers = setup(admin, agents, shared)
            admin.execute("vacuum analyze")
        rate, lat = run(url, workers, seconds)
    finally:
        server.drop_database(name)
    lat.sort()
    return rate, statistics.median(lat) * 1000, lat[int(len(lat) * 0.95)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()

    server = TestServer()
    server.start()
    try:
        results: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
        for r in range(opts.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for shared in order:
                res = measure(server, opts.agents, opts.seconds, shared)
                results[shared].append(res)
                label = "1 tenant " if shared else f"{opts.agents} tenants"
                print(f"round {r + 1} {label:>10}: {res[0]:8.1f} lifecycles/s  "
                      f"p50 {res[1]:6.1f} ms  p95 {res[2]:6.1f} ms", flush=True)
    finally:
        server.stop()

    one = statistics.mean(x[0] for x in results[True])
    many = statistics.mean(x[0] for x in results[False])
    print(f"\n{opts.agents} concurrent agents, 6 custody calls per lifecycle, "
          f"{opts.seconds:g}s x {opts.rounds} rounds")
    print(f"  {opts.agents} tenants (baseline): {many:8.1f} lifecycles/s")
    print(f"  1 tenant:             {one:8.1f} lifecycles/s")
    print(f"  ratio 1 tenant / {opts.agents} tenants: {one / many:.2f}")


if __name__ == "__main__":
    main()
