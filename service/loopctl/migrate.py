"""`loopctl migrate`: sqitch deploy --verify against the configured database."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class MigrationError(RuntimeError):
    pass


def sqitch_target(database_url: str) -> str:
    """postgresql://u:p@h:port/db -> db:pg://u:p@h:port/db (sqitch's URI form)."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise MigrationError(f"not a PostgreSQL URL: {parts.scheme}://…")
    return "db:" + urlunsplit(("pg", parts.netloc, parts.path, parts.query, ""))


def run_sqitch(
    command: str, database_url: str, migrations_dir: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    sqitch = shutil.which("sqitch")
    if sqitch is None:
        raise MigrationError("sqitch is not installed: run scripts/provision-db.sh")
    args = [sqitch, "--quiet", command, *extra, sqitch_target(database_url)]
    proc = subprocess.run(
        args, cwd=migrations_dir, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        # psql's own ERROR line says what broke; sqitch's last lines only say that it did.
        errors = [ln for ln in lines if "ERROR:" in ln][:1]
        detail = " | ".join(errors + lines[-2:]) or f"exit {proc.returncode}"
        raise MigrationError(f"sqitch {command} failed: {detail}")
    return proc


def deploy(database_url: str, migrations_dir: Path, to: str | None = None) -> None:
    extra = ["--verify"] + ([to] if to else [])
    run_sqitch("deploy", database_url, migrations_dir, *extra)


def revert(database_url: str, migrations_dir: Path, to: str | None = None) -> None:
    extra = ["-y"] + (["--to", to] if to else [])
    run_sqitch("revert", database_url, migrations_dir, *extra)


def verify(database_url: str, migrations_dir: Path) -> None:
    run_sqitch("verify", database_url, migrations_dir)
