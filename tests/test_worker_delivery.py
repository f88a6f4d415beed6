"""The delivery worker end to end: real PostgreSQL, real HTTP to a local receiver that
verifies every signature with the `standardwebhooks` library, real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loopctl.config import Settings
from loopctl.testing import Tenant, as_key, create_tenant
from loopctl.worker import BackgroundWorker
from loopctl.worker.receiver import Endpoint, Receiver

Conn = psycopg.Connection[Any]

FAST = {  # a shortened retry schedule and a quick lease, for tests
    "webhook_retry_schedule": "0.2,0.2,0.2",
    "webhook_retry_jitter": 0.0,
    "webhook_timeout_seconds": 5.0,
    "worker_lease_seconds": 6.0,
    "worker_poll_seconds": 30.0,  # only NOTIFY and the next-due time may wake the worker
    "webhooks_allow_private": True,
}


def env_for(settings: dict[str, Any], url: str) -> dict[str, str]:
    env = {f"LOOPCTL_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
           for k, v in settings.items()}
    return {**env, "LOOPCTL_DATABASE_URL": url}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def tenant(db: Conn) -> Tenant:
    db.execute(f"alter database {db.info.dbname} set loopctl.webhooks_allow_private = 'true'")
    return create_tenant(db)


@pytest.fixture
def start_worker(fresh_db: str) -> Iterator[Any]:
    started: list[BackgroundWorker] = []

    def start(**overrides: Any) -> BackgroundWorker:
        worker = BackgroundWorker(fresh_db, Settings(**{**FAST, **overrides})).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


class WorkerProcess:
    """`loopctl worker` as a real subprocess."""

    def __init__(self, url: str, **overrides: Any) -> None:
        self.env = {**os.environ, **env_for({**FAST, **overrides}, url)}
        self.log = tempfile.NamedTemporaryFile(prefix="loopctl-worker-", suffix=".log",  # noqa: SIM115
                                               delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "loopctl.cli", "worker"],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    procs: list[WorkerProcess] = []
    yield procs
    for p in procs:
        p.stop()


def subscribe(db: Conn, tenant: Tenant, receiver: Receiver, path: str,
              events: list[str] | None = None, **behaviour: Any) -> dict[str, Any]:
    with as_key(db, tenant.user_key, commit=True) as c:
        row = c.execute("select api.create_webhook(%s, %s)",
                        (receiver.url(path), events or ["*"])).fetchone()
    assert row is not None
    hook: dict[str, Any] = row[0]
    receiver.endpoints[path] = Endpoint(secret=hook["secret"], **behaviour)
    return hook


def emit(db: Conn, tenant: Tenant, event_type: str = "story.verified", n: int = 1) -> None:
    db.execute("select app.emit_event(%s, %s, jsonb_build_object('n', g)) "
               "from generate_series(1, %s) g", (tenant.id, event_type, n))


def delivery_states(db: Conn, webhook_id: str) -> Counter[str]:
    rows = db.execute("select status from app.webhook_deliveries where webhook_id = %s",
                      (webhook_id,)).fetchall()
    return Counter(r[0] for r in rows)


def wait_db(db: Conn, predicate: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def test_every_delivery_is_signed_and_verifies(db: Conn, tenant: Tenant, receiver: Receiver,
                                               start_worker: Any) -> None:
    a = subscribe(db, tenant, receiver, "/a")
    b = subscribe(db, tenant, receiver, "/b", events=["story.*"])
    # Negative control: an endpoint holding the wrong secret rejects the signature.
    wrong = subscribe(db, tenant, receiver, "/wrong")
    receiver.endpoints["/wrong"] = Endpoint(secret=a["secret"])
    # Retries on (a loaded test machine may time an attempt out); no endpoint gets disabled.
    start_worker(webhook_retry_schedule="0.2", webhook_disable_after_exhausted=100,
                 webhook_timeout_seconds=10.0, worker_lease_seconds=15.0)
    emit(db, tenant, "story.verified", 5)
    emit(db, tenant, "epic.completed", 2)
    with db.transaction(force_rollback=True):  # rolled back: never delivered
        emit(db, tenant, "story.rejected", 3)
    with as_key(db, tenant.user_key, commit=True) as c:
        c.execute("select api.test_webhook(%s)", (b["id"],))
    assert receiver.wait_for(lambda r: len(r.processed) == 7 + 5 + 1)
    assert wait_db(db, lambda: delivery_states(db, wrong["id"]) == Counter(exhausted=7))
    good = [r for r in receiver.snapshot() if r.path != "/wrong" and r.status == 200]
    assert len({r.message_id for r in good}) == 13 and all(r.verified for r in good)
    assert all(not r.verified and r.status == 400
               for r in receiver.snapshot() if r.path == "/wrong")
    bodies = [json.loads(r.body) for r in good]
    assert Counter(x["type"] for x in bodies) == Counter(
        {"story.verified": 10, "epic.completed": 2, "webhook.test": 1})
    assert all(x["tenant_id"] == tenant.id and "data" in x and "timestamp" in x for x in bodies)
    ids = {r[0] for r in db.execute(
        "select message_id from app.webhook_deliveries where status = 'succeeded'").fetchall()}
    assert ids == {r.message_id for r in good}
    assert delivery_states(db, a["id"]) == Counter(succeeded=7)
    assert delivery_states(db, b["id"]) == Counter(succeeded=6)
    log = db.execute("select count(*) from app.webhook_attempts where status_code = 200 "
                     "and webhook_id in (%s, %s)", (a["id"], b["id"])).fetchone()
    assert log == (13,)
    wrong_log = db.execute("select count(*), count(*) filter (where status_code = 200) "
                           "from app.webhook_attempts where webhook_id = %s",
                           (wrong["id"],)).fetchone()
    assert wrong_log == (14, 0)  # 7 deliveries x (1 attempt + 1 retry), none accepted


def test_failing_receiver_gets_the_event_on_attempt_n_plus_1(
        db: Conn, tenant: Tenant, receiver: Receiver, start_worker: Any) -> None:
    hook = subscribe(db, tenant, receiver, "/flaky", fail_first=2)
    start_worker()
    emit(db, tenant)
    assert receiver.wait_for(lambda r: len(r.processed) == 1)
    requests = receiver.snapshot()
    assert [r.status for r in requests] == [500, 500, 200]
    assert len({r.message_id for r in requests}) == 1  # the same webhook-id on every attempt
    gaps = [b.received_at - a.received_at for a, b in zip(requests, requests[1:], strict=False)]
    # The configured 0.2 s steps, not the 30 s fallback poll.
    assert all(0.18 <= g < 10 for g in gaps), gaps
    assert wait_db(db, lambda: delivery_states(db, hook["id"]) == Counter(succeeded=1))
    log = db.execute("select attempt, status_code from app.webhook_attempts order by attempt"
                     ).fetchall()
    assert log == [(1, 500), (2, 500), (3, 200)]


def test_retry_after_is_honoured(db: Conn, tenant: Tenant, receiver: Receiver,
                                 start_worker: Any) -> None:
    subscribe(db, tenant, receiver, "/busy", fail_first=1, retry_after="2")
    start_worker()
    emit(db, tenant)
    assert receiver.wait_for(lambda r: len(r.processed) == 1)
    first, second = receiver.snapshot()
    assert second.received_at - first.received_at >= 1.9


def test_always_failing_receiver_is_exhausted_and_disabled(
        db: Conn, tenant: Tenant, receiver: Receiver, start_worker: Any) -> None:
    hook = subscribe(db, tenant, receiver, "/down", always_fail=True)
    start_worker(webhook_retry_schedule="0.2,0.2")
    emit(db, tenant, n=3)
    assert wait_db(db, lambda: delivery_states(db, hook["id"]) == Counter(exhausted=3))
    assert len(receiver.snapshot()) == 9  # 1 + 2 retries each
    status = db.execute("select status, consecutive_exhaustions, disabled_reason "
                        "from app.webhooks where id = %s", (hook["id"],)).fetchone()
    assert status is not None and status[:2] == ("disabled", 3)
    emit(db, tenant, n=2)  # a disabled endpoint gets nothing more
    time.sleep(1)
    assert len(receiver.snapshot()) == 9
    assert delivery_states(db, hook["id"]) == Counter(exhausted=3)


def test_worker_refuses_private_targets_unless_allowed(
        db: Conn, tenant: Tenant, receiver: Receiver, start_worker: Any) -> None:
    # The subscription was accepted while the installation allowed private targets; a
    # worker configured without that permission still refuses to connect.
    hook = subscribe(db, tenant, receiver, "/private")
    start_worker(webhooks_allow_private=False, webhook_retry_schedule="60")
    emit(db, tenant)
    assert wait_db(db, lambda: delivery_states(db, hook["id"]) == Counter(failed=1))
    row = db.execute("select error, status_code from app.webhook_attempts").fetchone()
    assert row is not None and "refused" in row[0] and "127.0.0.1" in row[0]
    assert row[1] is None
    assert receiver.snapshot() == []


def test_killed_worker_loses_nothing_and_receivers_dedupe(
        fresh_db: str, db: Conn, tenant: Tenant, receiver: Receiver,
        processes: list[WorkerProcess]) -> None:
    hook = subscribe(db, tenant, receiver, "/slow", hold_first=True)
    emit(db, tenant, n=5)
    first = WorkerProcess(fresh_db)
    processes.append(first)
    first.start()
    # Every first request is held by the receiver: the worker is mid-delivery.
    assert receiver.wait_for(lambda r: len(r.snapshot()) == 5, timeout=60), first.output()
    assert first.signal(signal.SIGKILL) == -signal.SIGKILL
    emit(db, tenant, "epic.completed", n=3)  # committed while no worker runs
    receiver.release()  # the held requests complete on the receiver side only
    assert receiver.wait_for(lambda r: len(r.processed) == 5)
    states = delivery_states(db, hook["id"])
    assert states == Counter(delivering=5, pending=3), states
    second = WorkerProcess(fresh_db)
    processes.append(second)
    second.start()
    assert wait_db(db, lambda: delivery_states(db, hook["id"]) == Counter(succeeded=8)), \
        second.output()
    requests = receiver.snapshot()
    assert all(r.verified for r in requests)
    per_id = Counter(r.message_id for r in requests)
    assert len(per_id) == 8 and len(receiver.processed) == 8
    assert sorted(per_id.values()) == [1, 1, 1, 2, 2, 2, 2, 2]  # the 5 held ones redelivered
    assert receiver.duplicates == 5  # ... and deduplicated by webhook-id
    lost = db.execute("select count(*) from app.webhook_attempts where attempt = 1 "
                      "and not lease_held and error like 'lease expired%%'").fetchone()
    assert lost == (5,)


def test_two_worker_processes_never_deliver_the_same_attempt(
        fresh_db: str, db: Conn, tenant: Tenant, receiver: Receiver,
        processes: list[WorkerProcess]) -> None:
    hook = subscribe(db, tenant, receiver, "/both", delay_seconds=0.02)
    for _ in range(2):
        processes.append(WorkerProcess(fresh_db, worker_concurrency=4).start())
    time.sleep(2)  # both listening
    for _ in range(10):
        emit(db, tenant, n=20)
    assert wait_db(db, lambda: delivery_states(db, hook["id"]) == Counter(succeeded=200)), \
        processes[0].output()
    requests = receiver.snapshot()
    assert len(requests) == 200 and all(r.verified for r in requests)
    assert len({r.message_id for r in requests}) == 200 and receiver.duplicates == 0
    workers = db.execute("select worker, count(*) from app.webhook_attempts group by 1"
                         ).fetchall()
    assert len(workers) == 2 and sum(n for _, n in workers) == 200


def test_sigterm_finishes_the_delivery_in_flight(
        fresh_db: str, db: Conn, tenant: Tenant, receiver: Receiver,
        processes: list[WorkerProcess]) -> None:
    hook = subscribe(db, tenant, receiver, "/slowish", delay_seconds=1.5)
    worker = WorkerProcess(fresh_db)
    processes.append(worker)
    worker.start()
    emit(db, tenant)
    assert receiver.wait_for(lambda r: len(r.snapshot()) == 1, timeout=60), worker.output()
    assert worker.signal(signal.SIGTERM) == 0, worker.output()
    assert delivery_states(db, hook["id"]) == Counter(succeeded=1)
