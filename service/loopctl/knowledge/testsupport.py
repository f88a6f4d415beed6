"""Test and benchmark support: the bundled model served over real HTTP from a thread, and
pointing a database's app.embed() at it."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI
from psycopg import sql

from loopctl.embedded_pg import free_port
from loopctl.knowledge.embeddings import Embedder, LocalEmbedder, embeddings_router


class EmbeddingServer:
    """POST /v1/embeddings on 127.0.0.1:<free port>, serving `embedder` (default: the bundled
    all-MiniLM-L6-v2, loaded once per process)."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or LocalEmbedder()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/embeddings"
        app = FastAPI()
        app.include_router(embeddings_router(self.embedder))
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> EmbeddingServer:
        self.embedder.embed(["warm up"])  # load the model before the first request
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("embedding server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def point_database_at(admin: psycopg.Connection[Any], url: str | None,
                      model: str | None = None) -> None:
    """ALTER DATABASE <current> SET loopctl.embeddings_url (None: reset)."""
    dbname = admin.execute("select current_database()").fetchone()[0]  # type: ignore[index]
    for name, value in (("loopctl.embeddings_url", url), ("loopctl.embedding_model", model)):
        if value is None:
            admin.execute(sql.SQL("alter database {} reset {}").format(
                sql.Identifier(dbname), sql.SQL(name)))
        else:
            admin.execute(sql.SQL("alter database {} set {} = {}").format(
                sql.Identifier(dbname), sql.SQL(name), sql.Literal(value)))
