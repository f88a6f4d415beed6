"""`loopctl serve` on the embedded database runs a worker in the background: an event
committed while only `serve` runs is delivered, signed, to a local receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from loopctl.embedded_pg import free_port
from loopctl.testing import ServerProcess, as_key, create_tenant
from loopctl.worker.receiver import Endpoint, Receiver


def loopctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loopctl.cli", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, **env), check=False)


@pytest.mark.slow
def test_embedded_serve_delivers_webhooks(tmp_path: Path) -> None:
    env = {"LOOPCTL_DATA_DIR": str(tmp_path / "state"),
           "LOOPCTL_EMBEDDED_PG_PORT": str(free_port()), "LOOPCTL_DATABASE_URL": "",
           "LOOPCTL_WEBHOOKS_ALLOW_PRIVATE": "true"}
    server = ServerProcess(env)
    try:
        server.start(timeout=300)  # initdb and the first migration take a while
        with Receiver() as receiver:
            url = loopctl("db", "url", env=env).stdout.strip()
            with psycopg.connect(url, autocommit=True) as db:
                tenant = create_tenant(db)
                with as_key(db, tenant.user_key, commit=True) as c:
                    row = c.execute("select api.create_webhook(%s, array['story.*'])",
                                    (receiver.url("/serve"),)).fetchone()
                assert row is not None
                receiver.endpoints["/serve"] = Endpoint(secret=row[0]["secret"])
                db.execute("select app.emit_event(%s, 'story.verified', '{}'::jsonb)",
                           (tenant.id,))
                assert receiver.wait_for(lambda r: len(r.processed) == 1, timeout=60), \
                    server.log()
                assert all(r.verified for r in receiver.snapshot())
    finally:
        server.stop()
        loopctl("db", "stop", env=env)
