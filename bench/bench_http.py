"""HTTP gateway vs direct SQL, in one run.

Workloads: (1) lifecycle transitions (contract, claim, start, report by a peer,
review-complete and verify by an orchestrator: 6 calls per story); (2) a list read
(GET /api/v1/stories?project_id=&limit=50). Each at 1, 8 and 32 concurrent clients, once
through `loopctl serve` over HTTP and once as the same SQL calls over psycopg (the same
request settings: SET LOCAL ROLE + request.jwt.claims, one round trip). Prints throughput,
p50/p99 latency and the HTTP/SQL ratio, and the service's memory idle and under load.

    .venv/bin/python bench/bench_http.py [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from loopctl.testing import Key, ServerProcess, TestServer, create_agent_key, create_tenant

CONCURRENCY = (1, 8, 32)
STORIES_PER_WORKER = 60


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Actors:
    def __init__(self, impl: Key, peer: Key, orch: Key) -> None:
        self.impl, self.peer, self.orch = impl, peer, orch


def setup(admin: psycopg.Connection[Any], base_url: str) -> tuple[Actors, str, dict]:
    tenant = create_tenant(admin, settings={"rate_limit_per_minute": 10_000_000})
    actors = Actors(create_agent_key(admin, tenant.id, "agent", "impl"),
                    create_agent_key(admin, tenant.id, "agent", "peer"),
                    create_agent_key(admin, tenant.id, "orchestrator", "orch"))
    owner = httpx.Client(base_url=base_url, timeout=120,
                         headers={"Authorization": f"Bearer {tenant.user_key.raw}"})
    pid = owner.post("/api/v1/projects", json={"name": "B", "slug": "b"}).json()["data"]["id"]
    # One epic per (mode, concurrency, worker): every worker drives its own stories.
    epics, n = [], 0
    slots: dict[tuple[str, int, int], int] = {}
    for mode in ("http", "sql"):
        for conc in CONCURRENCY:
            for w in range(conc):
                n += 1
                slots[(mode, conc, w)] = n
                epics.append({"number": n, "title": f"E{n}", "stories": [
                    {"number": f"{n}.{i}", "title": f"S{n}.{i}", "acceptance_criteria": []}
                    for i in range(STORIES_PER_WORKER)]})
    r = owner.post(f"/api/v1/projects/{pid}/import", json={"epics": epics})
    assert r.status_code == 201, r.text
    rows = admin.execute("select e.number, s.id::text from app.stories s join app.epics e "
                         "on e.tenant_id = s.tenant_id and e.id = s.epic_id "
                         "where s.tenant_id = %s order by e.number, s.number",
                         (tenant.id,)).fetchall()
    by_epic: dict[int, list[str]] = {}
    for number, sid in rows:
        by_epic.setdefault(number, []).append(sid)
    stories = {slot: by_epic[num] for slot, num in slots.items()}
    return actors, pid, stories


STEPS = [  # (actor, function, body)
    ("impl", "contract", "contract_story", {"story_title": None, "ac_count": 0}),
    ("impl", "claim", "claim_story", {}),
    ("impl", "start", "start_story", {}),
    ("peer", "report", "report_story", {}),
    ("orch", "review-complete", "review_complete", {"review_type": "code"}),
    ("orch", "verify", "verify_story", {"result": "pass"}),
]


async def run_workers(conc: int, seconds: float,
                      make_worker: Callable[[int], Awaitable[list[float]]]
                      ) -> tuple[float, list[float]]:
    start = time.perf_counter()
    results = await asyncio.gather(*(make_worker(w) for w in range(conc)))
    elapsed = time.perf_counter() - start
    latencies = [x for r in results for x in r]
    return len(latencies) / elapsed, latencies


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 \
        else values[0] * 1000


async def bench(admin_url: str, server: ServerProcess, seconds: float) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        actors, pid, stories = setup(admin, server.base_url)
    titles: dict[str, str] = {}
    with psycopg.connect(admin_url) as admin:
        for sid, title in admin.execute("select id::text, title from app.stories"):
            titles[sid] = title
    keys = {"impl": actors.impl, "peer": actors.peer, "orch": actors.orch}
    gw_url = server_gateway_url(admin_url)
    idle_rss = rss_kib(server.proc.pid) if server.proc else 0
    peak = [idle_rss]
    stop_sampling = asyncio.Event()

    async def sampler() -> None:
        while not stop_sampling.is_set():
            if server.proc:
                peak[0] = max(peak[0], rss_kib(server.proc.pid))
            await asyncio.sleep(0.2)

    sampling = asyncio.create_task(sampler())
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    http = httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits)
    rows: list[tuple[str, int, float, float, float, float, float, float]] = []

    def sql_for(step: tuple, sid: str) -> str:
        actor, _, fn, body = step
        args = dict(body)
        if "story_title" in args:
            args["story_title"] = titles[sid]
        named = ", ".join([f"story_id => '{sid}'"] + [
            f"{k} => {json.dumps(v) if isinstance(v, int) else chr(39) + v + chr(39)}"
            for k, v in args.items()])
        key = keys[actor]
        claims = json.dumps(key.claims)
        return (f"begin; set local role {key.db_role}; "
                f"select set_config('request.jwt.claims', '{claims}', true); "
                f"select api.{fn}({named})::text; commit;")

    async def lifecycle_http(conc: int, w: int, deadline: float) -> list[float]:
        lat: list[float] = []
        for sid in stories[("http", conc, w)]:
            for actor, action, _, body in STEPS:
                if time.perf_counter() > deadline:
                    return lat
                payload = dict(body)
                if "story_title" in payload:
                    payload["story_title"] = titles[sid]
                t0 = time.perf_counter()
                r = await http.post(f"/api/v1/stories/{sid}/{action}", json=payload,
                                    headers={"Authorization": f"Bearer {keys[actor].raw}"})
                lat.append(time.perf_counter() - t0)
                assert r.status_code < 300, r.text
        return lat

    async def lifecycle_sql(conn: psycopg.AsyncConnection[Any], conc: int, w: int,
                            deadline: float) -> list[float]:
        lat: list[float] = []
        for sid in stories[("sql", conc, w)]:
            for step in STEPS:
                if time.perf_counter() > deadline:
                    return lat
                t0 = time.perf_counter()
                cur = conn.cursor()
                await cur.execute(sql_for(step, sid))
                lat.append(time.perf_counter() - t0)
        return lat

    list_sql = (f"begin; set local role {actors.impl.db_role}; "
                f"select set_config('request.jwt.claims', '{json.dumps(actors.impl.claims)}',"
                f" true); select api.list_stories(project_id => '{pid}', \"limit\" => 50)::text;"
                " commit;")

    async def list_http(deadline: float) -> list[float]:
        lat: list[float] = []
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = await http.get("/api/v1/stories", params={"project_id": pid, "limit": 50},
                               headers={"Authorization": f"Bearer {actors.impl.raw}"})
            lat.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        return lat

    async def list_sql_worker(conn: psycopg.AsyncConnection[Any], deadline: float
                              ) -> list[float]:
        lat: list[float] = []
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await conn.cursor().execute(list_sql)
            lat.append(time.perf_counter() - t0)
        return lat

    def job_for(workload: str, mode: str, conc: int,
                conns: list[psycopg.AsyncConnection[Any]], deadline: float
                ) -> Callable[[int], Awaitable[list[float]]]:
        def job(w: int) -> Awaitable[list[float]]:
            if workload == "lifecycle":
                return (lifecycle_http(conc, w, deadline) if mode == "http"
                        else lifecycle_sql(conns[w], conc, w, deadline))
            return list_http(deadline) if mode == "http" else list_sql_worker(conns[w],
                                                                              deadline)
        return job

    for conc in CONCURRENCY:
        conns = [await psycopg.AsyncConnection.connect(gw_url, autocommit=True)
                 for _ in range(conc)]
        for workload in ("lifecycle", "list"):
            measured = {}
            for mode in ("sql", "http"):
                deadline = time.perf_counter() + seconds
                job = job_for(workload, mode, conc, conns, deadline)
                measured[mode] = await run_workers(conc, seconds, job)
            (sql_tp, sql_lat), (http_tp, http_lat) = measured["sql"], measured["http"]
            rows.append((workload, conc, sql_tp, pct(sql_lat, 50), pct(sql_lat, 99),
                         http_tp, pct(http_lat, 50), pct(http_lat, 99)))
        for c in conns:
            await c.close()
    stop_sampling.set()
    await sampling
    await http.aclose()

    print(f"\n{'workload':<10} {'clients':>7} | {'SQL req/s':>9} {'p50 ms':>7} {'p99 ms':>7} |"
          f" {'HTTP req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'HTTP/SQL':>8}")
    print("-" * 92)
    for workload, conc, stp, s50, s99, htp, h50, h99 in rows:
        print(f"{workload:<10} {conc:>7} | {stp:>9.0f} {s50:>7.2f} {s99:>7.2f} |"
              f" {htp:>10.0f} {h50:>7.2f} {h99:>7.2f} | {htp / stp:>8.0%}")
    print(f"\nservice RSS: idle {idle_rss / 1024:.0f} MiB, peak under load "
          f"{peak[0] / 1024:.0f} MiB")


def server_gateway_url(admin_url: str) -> str:
    from loopctl.config import Settings
    from loopctl.gateway.credentials import authenticator_password, ensure_authenticator

    settings = Settings(database_url=admin_url)
    return ensure_authenticator(admin_url, authenticator_password(settings, admin_url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    pg = TestServer()
    pg.start()
    name, url = pg.clone()
    try:
        with ServerProcess({"LOOPCTL_DATABASE_URL": url, "PGRST_DB_POOL": "32"},
                           "--no-migrate") as server:
            time.sleep(1.0)
            asyncio.run(bench(url, server, args.seconds))
    finally:
        pg.drop_database(name)
        pg.stop()


if __name__ == "__main__":
    main()
