"""Issue #2: `loopctl serve|db|migrate` from the outside, as a user runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from loopctl.embedded_pg import free_port
from loopctl.testing import ServerProcess

LOOPCTL = [sys.executable, "-m", "loopctl.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 120):
    return subprocess.run([*LOOPCTL, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("loopctl: error:") and needle in lines[0], lines[0]


def test_unreachable_database_url_is_one_clear_line() -> None:
    port = free_port()
    proc = run_cli("migrate", env={"LOOPCTL_DATABASE_URL":
                                   f"postgresql://nobody:x@127.0.0.1:{port}/nothing"})
    assert_one_line_error(proc, "Connection refused")


def test_malformed_database_url_is_one_clear_line() -> None:
    proc = run_cli("serve", "--port", str(free_port()),
                   env={"LOOPCTL_DATABASE_URL": "not a url"})
    assert_one_line_error(proc, "must be a postgresql://")


def test_port_in_use_is_one_clear_line(fresh_db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("serve", "--port", str(port), "--no-migrate",
                       env={"LOOPCTL_DATABASE_URL": fresh_db})
    assert_one_line_error(proc, "address already in use")


def test_serve_against_external_database_reports_health(fresh_db: str) -> None:
    with ServerProcess({"LOOPCTL_DATABASE_URL": fresh_db}) as server:
        body = httpx.get(server.base_url + "/health").json()
    assert body["database"] == "ok"
    assert {"vector", "plpython3u"} <= set(body["extensions"])
    assert body["migration"]["change"]
    assert body["server_version"].split(".")[0].isdigit()


def test_health_is_503_when_database_goes_away(pg_server) -> None:
    name, url = pg_server.clone()
    try:
        with ServerProcess({"LOOPCTL_DATABASE_URL": url}) as server:
            pg_server.drop_database(name)  # WITH (FORCE) kills the pool's connections
            resp = httpx.get(server.base_url + "/health", timeout=30)
            assert resp.status_code == 503
            assert resp.json()["database"] == "unreachable"
    finally:
        pg_server.drop_database(name)


@pytest.mark.slow
def test_embedded_serve_migrates_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    env = {"LOOPCTL_DATA_DIR": str(tmp_path / "state"),
           "LOOPCTL_EMBEDDED_PG_PORT": str(free_port()), "LOOPCTL_DATABASE_URL": ""}
    try:
        with ServerProcess(env) as server:
            body = httpx.get(server.base_url + "/health").json()
            assert body["database"] == "ok"
            assert {"vector", "plpython3u"} <= set(body["extensions"])
        url = run_cli("db", "url", env=env).stdout.strip()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table public.survivor (note text)")
            conn.execute("insert into public.survivor values ('still here')")

        assert run_cli("db", "stop", env=env).returncode == 0
        assert run_cli("db", "status", env=env).returncode == 3  # stopped
        assert run_cli("db", "start", env=env).returncode == 0
        with psycopg.connect(url) as conn:
            assert conn.execute("select note from public.survivor").fetchone()[0] == "still here"
        if os.geteuid() == 0:  # the server must not run as root
            pid = (tmp_path / "state" / "pgdata" / "postmaster.pid").read_text().split()[0]
            assert os.stat(f"/proc/{pid}").st_uid != 0
    finally:
        run_cli("db", "stop", env=env)


@pytest.mark.slow
@pytest.mark.parametrize("preload", ["true", "false"])
def test_served_embedding_model_is_loaded_at_startup_unless_disabled(
        fresh_db: str, preload: str) -> None:
    import time

    env = {"LOOPCTL_DATABASE_URL": fresh_db, "LOOPCTL_EMBEDDINGS_PRELOAD": preload}
    with ServerProcess(env) as server:
        deadline = time.monotonic() + 120
        state = httpx.get(server.base_url + "/health").json()["embeddings"]
        while preload == "true" and state != "loaded" and time.monotonic() < deadline:
            time.sleep(0.5)
            state = httpx.get(server.base_url + "/health").json()["embeddings"]
        if preload == "false":
            time.sleep(2)
            state = httpx.get(server.base_url + "/health").json()["embeddings"]
    assert state == ("loaded" if preload == "true" else "not_loaded")
