"""Periodic housekeeping jobs that run inside every worker process.

Areas register a job with `@periodic(name, interval_seconds)` (an async function taking a
JobContext) or `sql_job(...)` for a single SQL statement, in a module listed in JOB_MODULES.
A job may also name LISTEN channels: a NOTIFY on one of them runs it at once. Several
workers may run a job at the same time, so jobs must be safe to run concurrently (take an
advisory lock or use SKIP LOCKED when they must not overlap).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from loopctl.config import Settings

log = logging.getLogger("loopctl.worker")

# Modules whose import registers jobs. Add yours here (one line).
JOB_MODULES: tuple[str, ...] = ("loopctl.worker.builtin_jobs", "loopctl.knowledge.worker_jobs",)


@dataclass(frozen=True)
class JobContext:
    pool: AsyncConnectionPool[Any]  # autocommit connections to the loopctl database
    database_url: str
    settings: Settings
    worker_name: str


JobFunc = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: JobFunc
    channels: tuple[str, ...] = ()


_REGISTRY: dict[str, PeriodicJob] = {}


def register(job: PeriodicJob) -> PeriodicJob:
    if job.interval_seconds <= 0:
        raise ValueError(f"job {job.name}: interval must be > 0")
    _REGISTRY[job.name] = job
    return job


def periodic(name: str, interval_seconds: float,
             channels: tuple[str, ...] = ()) -> Callable[[JobFunc], JobFunc]:
    def decorate(func: JobFunc) -> JobFunc:
        register(PeriodicJob(name, interval_seconds, func, channels))
        return func
    return decorate


def sql_job(name: str, interval_seconds: float, statement: str, *,
            requires_function: str | None = None,
            channels: tuple[str, ...] = ()) -> PeriodicJob:
    """A job running one SQL statement; skipped while `requires_function` (a regprocedure
    signature such as 'audit.seal_all()') does not exist in the database."""

    async def run(ctx: JobContext) -> None:
        async with ctx.pool.connection() as conn:
            if requires_function is not None:
                cur = await conn.execute("select to_regprocedure(%s) is not null",
                                         (requires_function,))
                row = await cur.fetchone()
                if not (row and row[0]):
                    return
            await conn.execute(statement)  # type: ignore[arg-type]

    return register(PeriodicJob(name, interval_seconds, run, channels))


def load_jobs() -> list[PeriodicJob]:
    for module in JOB_MODULES:
        importlib.import_module(module)
    return list(_REGISTRY.values())
