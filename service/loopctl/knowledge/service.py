"""Wiring the knowledge area into the service: configuration -> embedder, extractor, job
context, and the database-level settings app.embed() reads."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from loopctl.config import Settings
from loopctl.knowledge.embeddings import Embedder, make_embedder
from loopctl.knowledge.extractor import make_extractor
from loopctl.knowledge.jobs import JobContext

log = logging.getLogger(__name__)


def configured_embedder(settings: Settings) -> Embedder:
    return make_embedder(settings.embeddings_url, settings.embeddings_model,
                         settings.embeddings_api_key)


def job_context(settings: Settings) -> JobContext:
    return JobContext(
        embedder=configured_embedder(settings),
        extractor=make_extractor(settings.llm_url, settings.llm_model, settings.llm_api_key,
                                 settings.llm_provider),
        link_threshold=settings.knowledge_link_threshold)


def embeddings_endpoint(settings: Settings, host: str, port: int) -> str:
    """Where app.embed() gets query vectors: the configured endpoint, or this service."""
    if settings.embeddings_url:
        return settings.embeddings_url
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}/v1/embeddings"


def publish_embedding_settings(database_url: str, settings: Settings, host: str,
                               port: int) -> None:
    """ALTER DATABASE ... SET loopctl.embeddings_url / _api_key / embedding_model: database
    level, so a session cannot redirect app.embed() for itself. Changing the model here
    makes the worker re-embed every published article in the background."""
    values = {"loopctl.embeddings_url": embeddings_endpoint(settings, host, port),
              "loopctl.embedding_model": settings.embeddings_model,
              "loopctl.embeddings_api_key": settings.embeddings_api_key}
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            dbname = sql.Identifier(conn.info.dbname)
            for name, value in values.items():
                if value:
                    conn.execute(sql.SQL("alter database {} set {} = {}").format(
                        dbname, sql.SQL(name), sql.Literal(value)))
                else:
                    conn.execute(sql.SQL("alter database {} reset {}").format(
                        dbname, sql.SQL(name)))
    except psycopg.Error as exc:
        log.warning("could not publish the embedding settings to the database: %s", exc)
