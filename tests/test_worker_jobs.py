"""The worker's periodic-job registry: jobs run on their interval, a NOTIFY on a job's channel
runs it at once, a failing job does not stop the others, and the built-in audit sealer
links committed audit entries into the chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from loopctl.config import Settings
from loopctl.testing import create_tenant
from loopctl.worker import BackgroundWorker, JobContext, PeriodicJob
from loopctl.worker import jobs as registry

Conn = psycopg.Connection[Any]


@pytest.fixture
def scratch_jobs() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        registry._REGISTRY.pop(name, None)


def wait(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_jobs_run_on_interval_and_on_notify(fresh_db: str, db: Conn,
                                            scratch_jobs: list[str]) -> None:
    runs: dict[str, list[float]] = {"tick": [], "woken": [], "broken": []}
    lock = threading.Lock()

    def recorder(name: str, fail: bool = False) -> Any:
        async def run(ctx: JobContext) -> None:
            async with ctx.pool.connection() as conn:  # jobs get working connections
                await conn.execute("select 1")
            with lock:
                runs[name].append(time.monotonic())
            if fail:
                raise RuntimeError("this job always fails")
        return run

    for job in [PeriodicJob("test.tick", 0.2, recorder("tick")),
                PeriodicJob("test.woken", 60.0, recorder("woken"), channels=("test_wake",)),
                PeriodicJob("test.broken", 0.2, recorder("broken", fail=True))]:
        registry.register(job)
        scratch_jobs.append(job.name)
    worker = BackgroundWorker(fresh_db, Settings(worker_poll_seconds=30.0)).start()
    try:
        assert wait(lambda: len(runs["tick"]) >= 5 and len(runs["woken"]) == 1)
        assert len(runs["broken"]) >= 3  # retried on its interval despite failing
        time.sleep(0.5)
        assert len(runs["woken"]) == 1  # a 60 s interval: not run again by itself
        sent = time.monotonic()
        db.execute("notify test_wake")
        assert wait(lambda: len(runs["woken"]) == 2, timeout=10)
        assert runs["woken"][1] >= sent
    finally:
        worker.stop()
    with pytest.raises(ValueError):
        registry.register(PeriodicJob("test.bad", 0, recorder("tick")))


def test_builtin_audit_sealer_runs_in_the_worker(fresh_db: str, db: Conn) -> None:
    assert "audit.seal" in {j.name for j in registry.load_jobs()}
    tenant = create_tenant(db)  # writes audit entries, queued for sealing

    def pending() -> int:
        row = db.execute("select count(*) from audit.pending where tenant_id = %s",
                         (tenant.id,)).fetchone()
        return int(row[0]) if row else -1

    assert pending() > 0  # nothing else seals them in this test
    worker = BackgroundWorker(fresh_db, Settings()).start()
    try:
        assert wait(lambda: pending() == 0)
    finally:
        worker.stop()
    sealed = db.execute("select count(*) from audit.chain where tenant_id = %s",
                        (tenant.id,)).fetchone()
    assert sealed is not None and sealed[0] > 0
