"""pytest wiring: one real PostgreSQL per run, a migrated template, a fresh clone per test.

The controlling process starts the server and migrates the template once; xdist workers
inherit its address through the environment (workers are spawned after pytest_configure).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from loopctl.testing import TestServer

_server: TestServer | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _server
    if hasattr(config, "workerinput") or TestServer.from_env() is not None:
        return
    if not config.option.basetemp:
        # A private temp root per run: pytest prunes old numbered dirs under the shared
        # root, which breaks runs that overlap on one machine.
        config.option.basetemp = tempfile.mkdtemp(prefix="loopctl-pytest-")
    _server = TestServer()
    _server.start()
    os.environ.update(_server.to_env())


def pytest_unconfigure(config: pytest.Config) -> None:
    global _server
    if _server is not None:
        _server.stop()
        for key in _server.to_env():
            os.environ.pop(key, None)
        _server = None


@pytest.fixture(scope="session")
def pg_server() -> TestServer:
    server = TestServer.from_env()
    assert server is not None, "the test PostgreSQL was not started by pytest_configure"
    return server


@pytest.fixture
def fresh_db(pg_server: TestServer) -> Iterator[str]:
    """Admin URL of a database cloned from the migrated template, dropped afterwards."""
    name, url = pg_server.clone()
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def module_db(pg_server: TestServer) -> Iterator[str]:
    """Like fresh_db, shared by one module's tests (for expensive fixtures)."""
    name, url = pg_server.clone()
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def db(fresh_db: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit superuser connection to a fresh database (set-up and inspection only:
    assertions about access go through loopctl.testing.as_api_role)."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        yield conn
