"""The worker process loop: wake on NOTIFY (or a slow fallback poll, or when the next retry
falls due), claim, deliver concurrently, record; run the registered periodic jobs; on stop,
finish the deliveries in flight and exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from loopctl.config import ConfigError, Settings
from loopctl.worker import delivery
from loopctl.worker.jobs import JobContext, PeriodicJob, load_jobs

log = logging.getLogger("loopctl.worker")

EVENTS_CHANNEL = "loopctl_events"
MIN_RECHECK_SECONDS = 0.05  # something is due but locked by another worker's claim


def publish_installation_settings(database_url: str, settings: Settings) -> None:
    """Writes LOOPCTL_WEBHOOKS_ALLOW_PRIVATE where the SQL API reads it (a database-level
    setting, which a session cannot override for itself)."""
    value = "true" if settings.webhooks_allow_private else "false"
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            dbname = conn.info.dbname
            conn.execute(sql.SQL("alter database {} set loopctl.webhooks_allow_private = {}")
                         .format(sql.Identifier(dbname), sql.Literal(value)))
    except psycopg.Error as exc:
        log.warning("could not publish webhooks_allow_private to the database: %s", exc)


class Worker:
    def __init__(self, database_url: str, settings: Settings, name: str | None = None) -> None:
        if settings.worker_lease_seconds <= settings.webhook_timeout_seconds:
            raise ConfigError(
                "LOOPCTL_WORKER_LEASE_SECONDS must exceed LOOPCTL_WEBHOOK_TIMEOUT_SECONDS, or a "
                "slow delivery could be taken over by another worker while still in flight")
        if settings.worker_concurrency < 1:
            raise ConfigError("LOOPCTL_WORKER_CONCURRENCY must be >= 1")
        self.database_url = database_url
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.policy = delivery.RetryPolicy(settings.retry_schedule(),
                                           settings.webhook_retry_jitter,
                                           settings.webhook_disable_after_exhausted)
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        jobs = load_jobs()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.database_url, min_size=1,
            max_size=self.settings.worker_concurrency + len(jobs) + 2,
            kwargs={"autocommit": True}, open=False, name=f"worker-{self.name}")
        await pool.open(wait=True, timeout=30)
        job_events = {job.name: asyncio.Event() for job in jobs}
        ctx = JobContext(pool, self.database_url, self.settings, self.name)
        limits = httpx.Limits(max_connections=self.settings.worker_concurrency * 2)
        log.info("worker %s started (%d job(s): %s)", self.name, len(jobs),
                 ", ".join(j.name for j in jobs) or "none")
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds,
                                     follow_redirects=False, limits=limits) as client:
            background = [
                asyncio.create_task(self._listen(jobs, job_events)),
                asyncio.create_task(self._wake_on(stop)),
                *(asyncio.create_task(self._job_loop(job, ctx, job_events[job.name]))
                  for job in jobs),
            ]
            try:
                await self._dispatch(pool, client, stop)
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                await pool.close()
        log.info("worker %s stopped", self.name)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _dispatch(self, pool: AsyncConnectionPool[Any], client: httpx.AsyncClient,
                        stop: asyncio.Event) -> None:
        poll = self.settings.worker_poll_seconds
        while not stop.is_set():
            self._wake.clear()  # before claiming, so a NOTIFY during the claim is not lost
            free = self.settings.worker_concurrency - len(self._inflight)
            claimed: list[delivery.ClaimedDelivery] = []
            due: float | None = None
            if free > 0:
                try:
                    async with pool.connection() as conn:
                        claimed = await delivery.claim(conn, self.name, free,
                                                       self.settings.worker_lease_seconds)
                        if len(claimed) < free:
                            due = await delivery.next_due(conn)
                except psycopg.Error as exc:
                    log.warning("claim failed: %s", exc)
                    await self._sleep(1.0)
                    continue
            for item in claimed:
                task = asyncio.create_task(self._deliver(pool, client, item))
                self._inflight.add(task)
                task.add_done_callback(self._delivery_done)
            if free > 0 and len(claimed) == free:
                continue  # more may be due: claim again at once
            delay = poll if due is None or free <= 0 else min(poll, max(due, MIN_RECHECK_SECONDS))
            await self._sleep(delay)
        if self._inflight:
            log.info("stopping: waiting for %d delivery(ies) in flight", len(self._inflight))
            await asyncio.wait(self._inflight, timeout=self.settings.webhook_timeout_seconds + 5)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("delivery task failed: %r", exc)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _deliver(self, pool: AsyncConnectionPool[Any], client: httpx.AsyncClient,
                       item: delivery.ClaimedDelivery) -> None:
        result = await delivery.attempt(
            client, item, timeout=self.settings.webhook_timeout_seconds,
            allow_private=self.settings.webhooks_allow_private)
        # If the outcome cannot be recorded, the lease expires and the delivery is retried
        # (at least once delivery; receivers deduplicate by webhook-id).
        for pause in (0.2, 0.5, 1.0, 2.0, None):
            try:
                async with pool.connection() as conn:
                    outcome = await delivery.record(conn, self.name, item, result, self.policy)
                log.info("delivery %s attempt %d -> %s (%s)", item.delivery_id, item.attempt,
                         outcome, result.status_code or result.error)
                return
            except psycopg.Error as exc:
                if pause is None:
                    log.error("could not record delivery %s: %s", item.delivery_id, exc)
                    return
                await asyncio.sleep(pause)

    async def _listen(self, jobs: list[PeriodicJob], job_events: dict[str, asyncio.Event]) -> None:
        by_channel: dict[str, list[asyncio.Event]] = {EVENTS_CHANNEL: []}
        for job in jobs:
            for channel in job.channels:
                by_channel.setdefault(channel, []).append(job_events[job.name])
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
                async with conn:
                    for channel in by_channel:
                        await conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
                    self._wake.set()  # catch up with anything committed while not listening
                    async for note in conn.notifies():
                        if note.channel == EVENTS_CHANNEL:
                            self._wake.set()
                        for event in by_channel.get(note.channel, []):
                            event.set()
            except psycopg.Error as exc:
                log.warning("listen connection lost: %s; reconnecting", exc)
                await asyncio.sleep(1.0)

    async def _job_loop(self, job: PeriodicJob, ctx: JobContext, event: asyncio.Event) -> None:
        while True:
            event.clear()
            try:
                await job.run(ctx)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job %s failed", job.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=job.interval_seconds)


async def _run_until_signalled(database_url: str, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Worker(database_url, settings).run(stop)


def run_worker(database_url: str, settings: Settings) -> None:
    """`loopctl worker`: runs until SIGTERM/SIGINT, then finishes deliveries in flight."""
    publish_installation_settings(database_url, settings)
    asyncio.run(_run_until_signalled(database_url, settings))


class BackgroundWorker:
    """A worker in a thread of another process (`loopctl serve` on the embedded database)."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self._worker = Worker(database_url, settings)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> BackgroundWorker:
        self._thread = threading.Thread(target=self._main, name="loopctl-worker", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def _main(self) -> None:
        asyncio.run(self._amain())

    async def _amain(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._worker.run(self._stop)
        except Exception:
            log.exception("background worker crashed")

    def stop(self, timeout: float = 20.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
