"""The knowledge job runner as a worker job: extraction, ingest and embedding batches,
woken by NOTIFY loopctl_knowledge (app.knowledge_enqueue) or every few seconds."""

from __future__ import annotations

import asyncio

import psycopg

from loopctl.knowledge.jobs import JobContext as KnowledgeContext
from loopctl.knowledge.jobs import run_until_idle
from loopctl.knowledge.service import job_context
from loopctl.worker.jobs import JobContext, periodic

_contexts: dict[int, KnowledgeContext] = {}


def _run(database_url: str, ctx: JobContext) -> int:
    kctx = _contexts.setdefault(id(ctx.settings), job_context(ctx.settings))
    with psycopg.connect(database_url, autocommit=True) as conn:
        return run_until_idle(conn, kctx, max_batches=10)


@periodic("knowledge.jobs", 5.0, channels=("loopctl_knowledge",))
async def knowledge_jobs(ctx: JobContext) -> None:
    # The model and psycopg calls block: run the batch in a thread.
    await asyncio.to_thread(_run, ctx.database_url, ctx)
