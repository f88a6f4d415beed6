"""Test support shipped with the package: a real PostgreSQL for a test run.

Resolution order (issue #2): LOOPCTL_TEST_DATABASE_URL (an admin URL of an existing
server), else a testcontainers PostgreSQL built from docker/postgres when a Docker engine
answers, else a throwaway embedded cluster in a temporary directory. The schema is migrated
once into a template database; every test gets a fresh clone of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from loopctl import migrate
from loopctl.config import REPO_ROOT
from loopctl.embedded_pg import EmbeddedPostgres, free_port

API_ROLES = ("loopctl_anon", "loopctl_user", "loopctl_orchestrator", "loopctl_agent")


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))


def docker_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        proc = subprocess.run([docker, "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


class TestServer:
    """A PostgreSQL server for one test run, with a migrated template database."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.admin_url = ""
        self.template = f"loopctl_template_{os.getpid()}"
        self._tmpdir: str | None = None
        self._cluster: EmbeddedPostgres | None = None
        self._container: Any = None

    def start(self) -> None:
        if url := os.environ.get("LOOPCTL_TEST_DATABASE_URL"):
            self.admin_url = url
        elif docker_available():
            self._start_container()
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="loopctl-test-pg-")
            self._cluster = EmbeddedPostgres(Path(self._tmpdir), free_port(), fast_unsafe=True)
            self._cluster.start()
            self.admin_url = self._cluster.url("postgres")
        self.create_database(self.template)
        migrate.deploy(with_dbname(self.admin_url, self.template), REPO_ROOT / "migrations")

    def _start_container(self) -> None:  # pragma: no cover - needs a Docker engine
        from testcontainers.core.image import DockerImage
        from testcontainers.postgres import PostgresContainer

        image = DockerImage(path=str(REPO_ROOT / "docker" / "postgres"), tag="loopctl-pg:test")
        image.build()
        self._container = PostgresContainer(str(image), username="postgres",
                                            password="postgres", dbname="postgres")
        self._container.start()
        self.admin_url = self._container.get_connection_url(driver=None)

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
        if self._container is not None:  # pragma: no cover
            self._container.stop()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------
    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            stmt = sql.SQL("create database {}").format(sql.Identifier(name))
            if template:
                stmt = sql.SQL("create database {} template {} strategy file_copy").format(
                    sql.Identifier(name), sql.Identifier(template))
            conn.execute(stmt)
        return with_dbname(self.admin_url, name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))

    def clone(self) -> tuple[str, str]:
        """A fresh database cloned from the migrated template: (name, admin URL)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        return name, self.create_database(name, template=self.template)

    def to_env(self) -> dict[str, str]:
        return {"LOOPCTL_TEST_ADMIN_URL": self.admin_url, "LOOPCTL_TEST_TEMPLATE": self.template}

    @classmethod
    def from_env(cls) -> TestServer | None:
        if "LOOPCTL_TEST_ADMIN_URL" not in os.environ:
            return None
        server = cls()
        server.admin_url = os.environ["LOOPCTL_TEST_ADMIN_URL"]
        server.template = os.environ["LOOPCTL_TEST_TEMPLATE"]
        return server


@contextmanager
def as_api_role(
    conn: psycopg.Connection[Any],
    role: str,
    claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    commit: bool = False,
) -> Iterator[psycopg.Connection[Any]]:
    """Run statements as PostgREST would for a request: one transaction, SET LOCAL ROLE,
    request.jwt.claims and request.headers set locally; rolled back afterwards unless
    commit=True. `conn` must be in autocommit mode."""
    with conn.transaction(force_rollback=not commit):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (json.dumps(claims or {}),))
        conn.execute("select set_config('request.headers', %s, true)",
                     (json.dumps(headers or {}),))
        yield conn


class ServerProcess:
    """`loopctl serve` in a subprocess on a free port, for tests over real HTTP."""

    __test__ = False

    def __init__(self, env: dict[str, str], *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # Dozens of test servers need not each load the embedding model at startup.
        self._env = dict(os.environ, **{"LOOPCTL_EMBEDDINGS_PRELOAD": "false", **env})
        self._args = args
        # The log outlives this call: it is read on failure and removed by stop().
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="loopctl-serve-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ServerProcess:
        import time

        import httpx

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopctl.cli", "serve", "--port", str(self.port),
             *self._args],
            env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loopctl serve exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"loopctl serve did not answer in {timeout}s: {self.log()}")

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- tenants, keys and agents for tests ----------------------------------------------------
def key_hash(raw_key: str) -> str:
    import hashlib

    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass
class Key:
    """A raw API key and what it is: enough to act as it through as_key()."""

    raw: str
    role: str  # 'user' | 'orchestrator' | 'agent'
    tenant_id: str
    id: str
    agent_id: str | None = None

    @property
    def claims(self) -> dict[str, Any]:
        return {"role": f"loopctl_{self.role}", "key_hash": key_hash(self.raw)}

    @property
    def db_role(self) -> str:
        return f"loopctl_{self.role}"


@dataclass
class Tenant:
    id: str
    slug: str
    user_key: Key


def create_tenant(admin: psycopg.Connection[Any], slug: str | None = None,
                  settings: dict[str, Any] | None = None) -> Tenant:
    """A tenant and its first user key, created as the signup page does (admin connection)."""
    slug = slug or f"t-{uuid.uuid4().hex[:10]}"
    row = admin.execute(
        "select app.create_tenant(%s, %s, %s, %s::jsonb)",
        (f"Tenant {slug}", slug, f"owner@{slug}.example", json.dumps(settings or {})),
    ).fetchone()
    assert row is not None
    data = row[0]
    key = data["api_key"]
    tenant_id = data["tenant"]["id"]
    return Tenant(tenant_id, slug, Key(key["raw_key"], "user", tenant_id, key["id"]))


def create_agent_key(admin: psycopg.Connection[Any], tenant_id: str, role: str,
                     agent_name: str | None = None, *, agent_type: str | None = None,
                     expires_at: str | None = None) -> Key:
    """A key of `role`, bound to a new agent named `agent_name` when one is given (admin
    connection: test set-up only; the API paths are tested through their own functions)."""
    agent_id = None
    with admin.transaction():
        if agent_name:
            # The same function the API uses, so the lineage rule lives in one place.
            agent_row = admin.execute(
                "select (app.insert_agent(%s, %s, %s)).id::text",
                (tenant_id, agent_name,
                 agent_type or ("orchestrator" if role == "orchestrator" else "implementer")),
            ).fetchone()
            assert agent_row is not None
            agent_id = agent_row[0]
        row = admin.execute(
            "select app.mint_key(%s, %s, %s, %s, %s::timestamptz)",
            (tenant_id, agent_name or f"{role}-key", role, agent_id, expires_at),
        ).fetchone()
    assert row is not None
    return Key(row[0]["raw_key"], role, tenant_id, row[0]["id"], agent_id)


@contextmanager
def as_key(conn: psycopg.Connection[Any], key: Key, *, commit: bool = False,
           headers: dict[str, str] | None = None) -> Iterator[psycopg.Connection[Any]]:
    """Act as the holder of `key`, exactly as a gateway request would."""
    with as_api_role(conn, key.db_role, key.claims, headers, commit=commit) as c:
        yield c
