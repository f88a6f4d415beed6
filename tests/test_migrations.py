"""Issue #2: the sqitch project deploys, verifies, reverts to zero and deploys again."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from loopctl import migrate
from loopctl.config import REPO_ROOT

MIGRATIONS = REPO_ROOT / "migrations"


@pytest.fixture
def empty_db(pg_server):
    name = f"m_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


def schemas(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "select nspname from pg_namespace where nspname in ('app', 'audit', 'api')")}


def extensions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("select extname from pg_extension")}


def test_deploy_verify_revert_deploy(empty_db: str) -> None:
    migrate.deploy(empty_db, MIGRATIONS)
    migrate.verify(empty_db, MIGRATIONS)
    assert schemas(empty_db) == {"app", "audit", "api"}
    assert {"vector", "plpython3u", "pg_trgm", "pgcrypto"} <= extensions(empty_db)

    migrate.revert(empty_db, MIGRATIONS)
    assert schemas(empty_db) == set()
    assert not {"vector", "plpython3u"} & extensions(empty_db)
    with psycopg.connect(empty_db) as conn:
        deployed = conn.execute("select count(*) from sqitch.changes").fetchone()[0]
    assert deployed == 0

    migrate.deploy(empty_db, MIGRATIONS)
    migrate.verify(empty_db, MIGRATIONS)
    assert schemas(empty_db) == {"app", "audit", "api"}


def test_verify_fails_loudly_when_the_schema_is_damaged(empty_db: str) -> None:
    migrate.deploy(empty_db, MIGRATIONS)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("drop schema audit cascade")
    with pytest.raises(migrate.MigrationError, match="verify"):
        migrate.verify(empty_db, MIGRATIONS)


def test_bad_target_is_a_clear_error() -> None:
    with pytest.raises(migrate.MigrationError, match="not a PostgreSQL URL"):
        migrate.sqitch_target("mysql://x@y/z")
