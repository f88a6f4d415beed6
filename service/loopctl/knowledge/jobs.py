"""The knowledge job runner: one batch of extraction / ingest / embedding jobs.

Jobs are rows of app.knowledge_jobs, claimed in SQL with FOR UPDATE SKIP LOCKED and a
lease, so several workers can run this side by side. Each job runs in its own transaction;
a failure is recorded and retried with a backoff computed in SQL (app.knowledge_fail_job).
The connection must be the worker's privileged (migration) connection, in autocommit mode.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loopctl.knowledge.embeddings import Embedder, vector_literal
from loopctl.knowledge.extractor import DeterministicExtractor, Extractor

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


@dataclass
class JobContext:
    embedder: Embedder | None
    extractor: Extractor = field(default_factory=DeterministicExtractor)
    link_threshold: float = 0.6
    max_links: int = 5
    # vectors computed for this batch in one model call: (article id, content hash) -> vector
    prepared: dict[tuple[str, str], list[float]] = field(default_factory=dict)


def _cur(conn: Conn) -> psycopg.Cursor[dict[str, Any]]:
    return conn.cursor(row_factory=dict_row)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _extract(conn: Conn, job: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    tenant = job["tenant_id"]
    payload = job["payload"]
    if job["kind"] == "extract":
        row = _cur(conn).execute("select app.knowledge_review_source(%s, %s::uuid) as s",
                           (tenant, payload["review_id"])).fetchone()
        source = row["s"] if row else None
        if source is None:
            return {"skipped": "review no longer exists"}
        source["kind"] = "review"
        origin, ref = "review", str(source["review_id"])
        project, key, agent = source["project_id"], source["reviewer_key_id"], source[
            "reviewer_agent_id"]
    else:
        source = {**payload, "kind": "ingest"}
        origin, ref = "ingest", payload.get("source_ref") or f"job:{job['id']}"
        project, key, agent = payload.get("project_id"), payload.get("key_id"), payload.get(
            "agent_id")
    drafts = ctx.extractor.extract(source)
    created, duplicates = [], 0
    for d in drafts:
        row = _cur(conn).execute(
            "select app.knowledge_insert_draft(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) as id",
            (tenant, project, d.title, d.body, d.category, d.tags, origin, ref, key, agent),
        ).fetchone()
        if row and row["id"]:
            created.append(str(row["id"]))
        else:
            duplicates += 1
    return {"drafts": len(drafts), "created": created, "duplicates": duplicates}


def _embed(conn: Conn, job: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    if ctx.embedder is None:
        raise RuntimeError("no embedding model configured")
    tenant, article = job["tenant_id"], job["payload"]["article_id"]
    src = _cur(conn).execute("select * from app.knowledge_embed_source(%s, %s::uuid)",
                       (tenant, article)).fetchone()
    if src is None or src["status"] is None:
        return {"skipped": "article no longer exists"}
    if src["status"] != "published":
        return {"skipped": f"article is {src['status']}"}
    model = ctx.embedder.model_name
    active = _cur(conn).execute("select app.knowledge_active_model() as m").fetchone()
    if active and active["m"] != model:
        raise RuntimeError(f"worker embeds with {model!r} but the installation's active model "
                           f"is {active['m']!r} (loopctl.embedding_model)")
    embedded = False
    if src["embedding_model"] != model or src["embedded_hash"] != src["content_hash"]:
        vec = ctx.prepared.pop((str(article), src["content_hash"]), None)
        if vec is None:
            [vec] = ctx.embedder.embed([src["body"]])
        row = _cur(conn).execute(
            "select app.knowledge_store_embedding(%s, %s::uuid, %s::vector, %s, %s) as ok",
            (tenant, article, vector_literal(vec), model, src["content_hash"])).fetchone()
        if not (row and row["ok"]):
            raise RuntimeError("article changed while it was embedded; retrying")
        embedded = True
    links = _cur(conn).execute(
        "select app.knowledge_autolink(%s, %s::uuid, %s::real, %s::int) as n",
        (tenant, article, ctx.link_threshold, ctx.max_links)).fetchone()
    return {"embedded": embedded, "model": model, "links": links["n"] if links else 0}


HANDLERS: dict[str, Callable[[Conn, dict[str, Any], JobContext], dict[str, Any]]] = {
    "extract": _extract,
    "ingest": _extract,
    "embed": _embed,
}


def _prepare_embeddings(conn: Conn, jobs: list[dict[str, Any]], ctx: JobContext) -> None:
    """Embeds the batch's articles in one model call (much cheaper than one call each);
    a failure here is left to the per-job path, which records it on the job."""
    ctx.prepared.clear()
    if ctx.embedder is None:
        return
    wanted: list[tuple[str, str, str]] = []
    for job in jobs:
        if job["kind"] != "embed":
            continue
        src = _cur(conn).execute("select * from app.knowledge_embed_source(%s, %s::uuid)",
                                 (job["tenant_id"], job["payload"]["article_id"])).fetchone()
        if src and src["status"] == "published" and (
                src["embedding_model"] != ctx.embedder.model_name
                or src["embedded_hash"] != src["content_hash"]):
            wanted.append((job["payload"]["article_id"], src["content_hash"], src["body"]))
    if not wanted:
        return
    try:
        vectors = ctx.embedder.embed([w[2] for w in wanted])
    except Exception as exc:  # noqa: BLE001
        log.warning("batch embedding failed, falling back to one call per job: %s", exc)
        return
    ctx.prepared = {(str(a), h): v for (a, h, _), v in zip(wanted, vectors, strict=True)}


def run_pending_jobs(conn: Conn, ctx: JobContext | None = None, *, limit: int = 20,
                     worker_id: str | None = None, lease_seconds: int = 300) -> int:
    """Claim and run one batch; returns how many jobs were processed (done or failed)."""
    ctx = ctx or JobContext(embedder=None)
    worker_id = worker_id or default_worker_id()
    if ctx.embedder is not None:
        # A changed active model (or missed publish) re-embeds in the background.
        _cur(conn).execute("select app.knowledge_queue_reembed(%s)", (limit * 5,))
    with conn.transaction():
        jobs = _cur(conn).execute("select * from app.knowledge_claim_jobs(%s, %s, %s)",
                            (worker_id, limit, lease_seconds)).fetchall()
    _prepare_embeddings(conn, jobs, ctx)
    for job in jobs:
        try:
            with conn.transaction():
                result = HANDLERS[job["kind"]](conn, job, ctx)
                _cur(conn).execute("select app.knowledge_complete_job(%s, %s, %s, %s)",
                             (job["tenant_id"], job["id"], worker_id, Jsonb(result)))
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and retried
            log.warning("knowledge job %s (%s) failed: %s", job["id"], job["kind"], exc)
            with conn.transaction():
                _cur(conn).execute("select app.knowledge_fail_job(%s, %s, %s, %s)",
                             (job["tenant_id"], job["id"], worker_id,
                              f"{type(exc).__name__}: {exc}"))
    return len(jobs)


def run_until_idle(conn: Conn, ctx: JobContext, *, max_batches: int = 50) -> int:
    """Batches until nothing is runnable (tests, CLI one-shot)."""
    total = 0
    for _ in range(max_batches):
        n = run_pending_jobs(conn, ctx)
        total += n
        if n == 0:
            break
    return total
