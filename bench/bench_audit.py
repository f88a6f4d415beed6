"""The cost of auditing, and how fast the sealer links entries into the hash chain.

Workload: N concurrent connections, each committing one story transition per transaction
(UPDATE of the status columns of its own story in app.stories, attributed to an agent key
and labelled with a domain action exactly as the state-machine functions do). Runs, side by
side on one throwaway PostgreSQL, alternating in rounds so load drift hits every mode:

  bare        audit trigger disabled on app.stories (the baseline)
  audited     the audit trigger on, all writers in ONE tenant (the contended case)
  audited-N   the audit trigger on, each writer in its own tenant

Then the backlog the audited rounds left in audit.pending is sealed (entries linked per
second) and each chain verified (entries checked per second).

    PYTHONPATH=service .venv/bin/python bench/bench_audit.py [--clients 4] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from typing import Any

import psycopg

from loopctl.testing import Key, TestServer, create_agent_key, create_tenant

STATUSES = ["contracted", "assigned", "implementing", "reported_done", "pending"]


def make_story(db: psycopg.Connection[Any], tenant_id: str, number: str) -> str:
    project, epic, story = (str(uuid.uuid4()) for _ in range(3))
    db.execute("insert into app.projects (tenant_id, id, name, slug) values (%s, %s, 'B', %s)",
               (tenant_id, project, f"p-{project[:8]}"))
    db.execute("insert into app.epics (tenant_id, id, project_id, number, title) "
               "values (%s, %s, %s, 1, 'E')", (tenant_id, epic, project))
    db.execute("insert into app.stories (tenant_id, id, project_id, epic_id, number, title) "
               "values (%s, %s, %s, %s, %s, 'S')", (tenant_id, story, project, epic, number))
    return story


def transitions(url: str, key: Key, story_id: str, seconds: float,
                out: list[float]) -> None:
    """Commit transitions of one story for `seconds`; append each latency (s) to out."""
    claims = json.dumps(key.claims)
    with psycopg.connect(url) as conn:
        i = 0
        deadline = time.perf_counter() + seconds
        while (start := time.perf_counter()) < deadline:
            status = STATUSES[i % len(STATUSES)]
            conn.execute("select set_config('request.jwt.claims', %s, true), "
                         "set_config('loopctl.audit_action', %s, true)",
                         (claims, f"story.{status}"))
            conn.execute("update app.stories set agent_status = %s, updated_at = now(), "
                         "claimed_at = case when %s = 'assigned' then now() else claimed_at end "
                         "where tenant_id = %s and id = %s",
                         (status, status, key.tenant_id, story_id))
            conn.commit()
            out.append(time.perf_counter() - start)
            i += 1


def run_round(url: str, writers: list[tuple[Key, str]], seconds: float) -> list[float]:
    latencies: list[list[float]] = [[] for _ in writers]
    threads = [threading.Thread(target=transitions, args=(url, key, story, seconds, lat))
               for (key, story), lat in zip(writers, latencies, strict=True)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return [x for lat in latencies for x in lat]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server = TestServer()
    server.start()
    try:
        _, url = server.clone()
        with psycopg.connect(url, autocommit=True) as db:
            one = create_tenant(db)
            one_tenant = []
            for i in range(args.clients):
                key = create_agent_key(db, one.id, "agent", f"w{i}")
                one_tenant.append((key, make_story(db, one.id, f"{i}.1")))
            n_tenants = []
            for i in range(args.clients):
                t = create_tenant(db)
                n_tenants.append((create_agent_key(db, t.id, "agent", f"w{i}"),
                                  make_story(db, t.id, "1.1")))
            db.execute("select audit.seal_all()")
            db.execute("vacuum analyze")

            results: dict[str, list[float]] = {"bare": [], "audited": [], "audited-N": []}
            elapsed = {mode: 0.0 for mode in results}
            for _ in range(args.rounds):
                for mode in results:
                    trigger = "disable" if mode == "bare" else "enable"
                    db.execute(f"alter table app.stories {trigger} trigger audit_record_change")
                    writers = n_tenants if mode == "audited-N" else one_tenant
                    results[mode] += run_round(url, writers, args.seconds)
                    elapsed[mode] += args.seconds
            db.execute("alter table app.stories enable trigger audit_record_change")

            print(f"story transitions, {args.clients} concurrent connections, "
                  f"{args.rounds} x {args.seconds:.0f}s per mode")
            print(f"{'mode':<11} {'tx/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
            rate = {}
            for mode, lat in results.items():
                rate[mode] = len(lat) / elapsed[mode]
                print(f"{mode:<11} {rate[mode]:>9.0f} {pct(lat, 50):>8.2f} "
                      f"{pct(lat, 95):>8.2f} {pct(lat, 99):>8.2f}")
            print(f"audited / bare         = {rate['audited'] / rate['bare']:.2f}")
            print(f"audited 1 tenant / N   = {rate['audited'] / rate['audited-N']:.2f}")

            pending = db.execute("select count(*) from audit.pending").fetchone()
            assert pending is not None
            start = time.perf_counter()
            sealed = 0
            while (n := db.execute("select (audit.seal_all(5000) ->> 'sealed')::bigint")
                   .fetchone()[0]) > 0:  # type: ignore[index]
                sealed += n
            seal_s = time.perf_counter() - start
            print(f"sealing: {sealed} entries (backlog {pending[0]}) in {seal_s:.2f}s = "
                  f"{sealed / seal_s:.0f} entries/s")

            tenants = [one.id] + [k.tenant_id for k, _ in n_tenants]
            start = time.perf_counter()
            checked = 0
            for tid in tenants:
                res = db.execute("select audit.verify_chain(%s)", (tid,)).fetchone()[0]  # type: ignore[index]
                assert res["ok"], res
                checked += res["checked"]
            verify_s = time.perf_counter() - start
            print(f"verify:  {checked} links in {verify_s:.2f}s = "
                  f"{checked / verify_s:.0f} links/s (all chains ok)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
