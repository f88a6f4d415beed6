"""A private PostgreSQL cluster managed by loopctl (`loopctl db start|stop|status|url`).

The cluster lives in one directory (data, log, superuser password), listens on loopback
only, and survives restarts. PostgreSQL refuses to run as root, so when loopctl is invoked
as root the server processes run as an unprivileged OS user (`postgres` by default).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


class EmbeddedPgError(RuntimeError):
    """A problem with the embedded cluster, worded for a one-line CLI error."""


def find_pg_bin() -> Path:
    """The newest PostgreSQL server bin directory on this machine (LOOPCTL_PG_BIN overrides)."""
    if env := os.environ.get("LOOPCTL_PG_BIN"):
        return Path(env)
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise EmbeddedPgError(
        "no PostgreSQL server found: run scripts/provision-db.sh (Debian) or set "
        "LOOPCTL_DATABASE_URL to an external database"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do: a port held only by TIME_WAIT connections is free to listen on.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServerUser:
    """The OS identity the server runs as; None fields mean 'the current user'."""

    uid: int | None = None
    gid: int | None = None
    home: str | None = None

    @classmethod
    def for_current_process(cls) -> ServerUser:
        if os.geteuid() != 0:
            return cls()
        name = os.environ.get("LOOPCTL_PG_OS_USER", "postgres")
        try:
            entry = pwd.getpwnam(name)
        except KeyError as exc:
            raise EmbeddedPgError(
                f"running as root, but OS user {name!r} (to run PostgreSQL) does not exist; "
                "install postgresql or set LOOPCTL_PG_OS_USER"
            ) from exc
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_dir)


class EmbeddedPostgres:
    """One cluster under `base_dir`: pgdata/, postgres.log, superuser.password, cluster.json."""

    def __init__(self, base_dir: Path, port: int = 54329, *, fast_unsafe: bool = False) -> None:
        self.base_dir = base_dir.resolve()
        self.pgdata = self.base_dir / "pgdata"
        self.log_file = self.base_dir / "postgres.log"
        self.password_file = self.base_dir / "superuser.password"
        self.state_file = self.base_dir / "cluster.json"
        self.requested_port = port
        # Throwaway test clusters trade durability for speed; a real data dir never does.
        self.fast_unsafe = fast_unsafe
        self.bin = find_pg_bin()
        self.user = ServerUser.for_current_process()

    # -- state ---------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    @property
    def port(self) -> int:
        if self.state_file.exists():
            return int(json.loads(self.state_file.read_text())["port"])
        return self.requested_port

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://postgres:{quote(self.password, safe='')}@127.0.0.1:{self.port}/"
            f"{dbname}"
        )

    # -- process helpers -------------------------------------------------------------------
    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        kwargs: dict[str, object] = {}
        if self.user.uid is not None:
            env["HOME"] = self.user.home or "/"
            kwargs = {"user": self.user.uid, "group": self.user.gid, "extra_groups": []}
        proc = subprocess.run(  # noqa: PLW1510 - check handled below for a clear message
            args, env=env, cwd="/", capture_output=True, text=True, **kwargs  # type: ignore[arg-type]
        )
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit {proc.returncode}"
            raise EmbeddedPgError(f"{Path(args[0]).name} failed: {last} (log: {self.log_file})")
        return proc

    def _give_to_server_user(self, path: Path) -> None:
        if self.user.uid is None:
            return
        os.chown(path, self.user.uid, self.user.gid or -1)
        # Every parent must be traversable by the server user (mkdtemp makes 0700 dirs).
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)

    # -- lifecycle -------------------------------------------------------------------------
    def init(self) -> None:
        if self.initialized:
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self._give_to_server_user(self.base_dir)
        password = secrets.token_urlsafe(24)
        pw_tmp = self.base_dir / ".initdb.pw"
        pw_tmp.write_text(password + "\n")
        os.chmod(pw_tmp, 0o600)
        self._give_to_server_user(pw_tmp)
        try:
            self._run([
                str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                "--auth=scram-sha-256", f"--pwfile={pw_tmp}", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-instructions",
            ])
        finally:
            pw_tmp.unlink(missing_ok=True)
        self.password_file.write_text(password + "\n")
        os.chmod(self.password_file, 0o600)
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "shared_buffers = '128MB'",
            "log_min_messages = warning",
            "log_min_error_statement = panic",
        ]
        if self.fast_unsafe:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# loopctl embedded cluster\n" + "\n".join(settings) + "\n")
        port = self.requested_port
        self.state_file.write_text(json.dumps({"port": port}))

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        proc = self._run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "status"], check=False)
        return proc.returncode == 0

    def start(self, timeout: int = 60) -> None:
        self.init()
        if self.is_running():
            return
        if not port_is_free(self.port):
            raise EmbeddedPgError(
                f"port {self.port} on 127.0.0.1 is already in use; stop what holds it or set "
                "LOOPCTL_EMBEDDED_PG_PORT (for a new data dir)"
            )
        if not self.log_file.exists():
            self.log_file.touch()
            self._give_to_server_user(self.log_file)
        self._run([
            str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file),
            "-w", "-t", str(timeout), "-o", f"-p {self.port}", "start",
        ])
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if proc.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedPgError(f"PostgreSQL did not become ready in {timeout}s ({self.log_file})")

    def stop(self) -> None:
        if self.is_running():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w",
                       "stop"])

    def status(self) -> dict[str, object]:
        return {
            "data_dir": str(self.base_dir),
            "initialized": self.initialized,
            "running": self.is_running(),
            "port": self.port,
        }

    def ensure_database(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
