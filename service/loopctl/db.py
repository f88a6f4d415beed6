"""Database connections: URL resolution (external or embedded) and the connection pool."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

from loopctl.config import Settings
from loopctl.embedded_pg import EmbeddedPostgres

EMBEDDED_DBNAME = "loopctl"


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be reached; the message is one clear line."""


def embedded_cluster(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.resolved_data_dir(), settings.embedded_pg_port)


def database_url(settings: Settings, *, start_embedded: bool = True) -> str:
    """The URL to use: LOOPCTL_DATABASE_URL, else the embedded cluster (started on demand)."""
    if settings.database_url:
        if not settings.database_url.startswith(("postgresql://", "postgres://")):
            raise DatabaseUnavailable(
                "LOOPCTL_DATABASE_URL must be a postgresql://user:password@host:port/db URL"
            )
        return settings.database_url
    cluster = embedded_cluster(settings)
    if start_embedded:
        cluster.start()
        cluster.ensure_database(EMBEDDED_DBNAME)
    return cluster.url(EMBEDDED_DBNAME)


def check_reachable(url: str, timeout: int = 5) -> None:
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        raise DatabaseUnavailable(_one_line(exc)) from None
    except Exception as exc:  # malformed URLs surface as ValueError/ProgrammingError
        raise DatabaseUnavailable(f"invalid database URL: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def make_pool(url: str, settings: Settings) -> ConnectionPool:
    return ConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        open=False,
        kwargs={"autocommit": True},
        name="loopctl",
    )
