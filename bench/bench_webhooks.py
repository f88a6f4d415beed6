"""Webhook delivery benchmark: deliveries per second to a local receiver and the lag from
commit to delivery (p50/p99), with 1 and 2 `loopctl worker` processes.

Baseline: the same receiver driven directly by httpx with the same concurrency (no database,
no outbox): the ceiling the worker is measured against. Ratios are printed side by side.

    PYTHONPATH=service .venv/bin/python bench/bench_webhooks.py [--burst 600] [--lag 150]

Uses LOOPCTL_TEST_DATABASE_URL when set, else a throwaway PostgreSQL (as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import psycopg

from loopctl.testing import TestServer, as_key, create_tenant
from loopctl.worker import signing
from loopctl.worker.receiver import Endpoint, Receiver

CONCURRENCY = 16


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def baseline(receiver: Receiver, n: int) -> float:
    """Direct signed POSTs to the receiver with the worker's concurrency: deliveries/s."""
    secret = receiver.endpoints["/bench"].secret
    body = json.dumps({"type": "story.verified", "data": {"n": 1}})
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def post_all(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            headers = signing.headers(secret, f"msg_base_{i}", int(time.time()), body)
            r = await client.post(receiver.url("/bench"), content=body, headers=headers)
            r.raise_for_status()

    t0 = time.perf_counter()
    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(post_all(client) for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - t0)


def start_workers(url: str, count: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "LOOPCTL_DATABASE_URL": url, "LOOPCTL_WEBHOOKS_ALLOW_PRIVATE": "true",
           "LOOPCTL_WORKER_CONCURRENCY": str(CONCURRENCY)}
    return [subprocess.Popen([sys.executable, "-m", "loopctl.cli", "worker"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def wait_processed(receiver: Receiver, n: int, timeout: float = 120) -> None:
    if not receiver.wait_for(lambda r: len(r.processed) >= n, timeout):
        raise RuntimeError(f"only {len(receiver.processed)} of {n} deliveries arrived")


def run_config(server: TestServer, workers: int, burst: int, lag_events: int) -> dict[str, Any]:
    name, url = server.clone()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with Receiver() as receiver, psycopg.connect(url, autocommit=True) as db:
            db.execute(f"alter database {name} set loopctl.webhooks_allow_private = 'true'")
            tenant = create_tenant(db)
            with as_key(db, tenant.user_key, commit=True):
                row = db.execute("select api.create_webhook(%s, array['*'])",
                                 (receiver.url("/bench"),)).fetchone()
            assert row is not None
            receiver.endpoints["/bench"] = Endpoint(secret=row[0]["secret"])
            procs = start_workers(url, workers)
            # Warm-up: workers connected and listening.
            db.execute("select app.emit_event(%s, 'story.verified', '{}'::jsonb)", (tenant.id,))
            wait_processed(receiver, 1, timeout=60)

            # Throughput: one committed burst, until the receiver has processed all of it.
            start = len(receiver.processed)
            t0 = time.perf_counter()
            db.execute("select app.emit_event(%s, 'story.verified', jsonb_build_object('n', g)) "
                       "from generate_series(1, %s) g", (tenant.id, burst))
            wait_processed(receiver, start + burst)
            rate = burst / (time.perf_counter() - t0)

            # Lag: one event per transaction, 30 ms apart (below capacity: lag, not queueing).
            committed: dict[str, float] = {}
            for _ in range(lag_events):
                r = db.execute("select app.emit_event(%s, 'story.verified', '{}'::jsonb)",
                               (tenant.id,)).fetchone()
                assert r is not None
                committed[str(r[0])] = time.time()
                time.sleep(0.03)
            wait_processed(receiver, start + burst + lag_events)
            received = {req.message_id.rsplit("_", 1)[1]: req.received_at
                        for req in receiver.snapshot() if req.status == 200}
            lags = [(received[e] - t) * 1000 for e, t in committed.items()]
            if not all(r.verified for r in receiver.snapshot()):
                raise RuntimeError("a delivery failed signature verification")
            return {"workers": workers, "rate": rate, "p50": percentile(lags, 0.5),
                    "p99": percentile(lags, 0.99)}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        server.drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=600)
    parser.add_argument("--lag", type=int, default=100)
    args = parser.parse_args()
    server = TestServer()
    print("starting PostgreSQL and migrating the template ...", flush=True)
    server.start()
    try:
        with Receiver() as receiver:
            receiver.endpoints["/bench"] = Endpoint(secret="whsec_" + "A" * 43 + "=")
            base = asyncio.run(baseline(receiver, args.burst))
        results = [run_config(server, w, args.burst, args.lag) for w in (1, 2)]
    finally:
        server.stop()
    print(f"\nwebhook delivery, {args.burst} events burst, {args.lag} events for lag, "
          f"concurrency {CONCURRENCY} per worker")
    print(f"{'run':<28}{'deliveries/s':>14}{'vs baseline':>13}{'vs 1 worker':>13}"
          f"{'lag p50 ms':>12}{'lag p99 ms':>12}")
    print(f"{'baseline: direct httpx POST':<28}{base:>14.0f}{1.0:>13.2f}{'':>13}"
          f"{'':>12}{'':>12}")
    one = results[0]["rate"]
    for r in results:
        label = f"loopctl worker x{r['workers']}"
        print(f"{label:<28}{r['rate']:>14.0f}{r['rate'] / base:>13.2f}{r['rate'] / one:>13.2f}"
              f"{r['p50']:>12.1f}{r['p99']:>12.1f}")
    print(f"(lag median across runs: {statistics.median(r['p50'] for r in results):.1f} ms)")


if __name__ == "__main__":
    main()
