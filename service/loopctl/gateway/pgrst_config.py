"""The PostgREST-format configuration file (postgrest.conf), read by loopctl's gateway.

Only the keys the gateway uses are interpreted; the file stays valid for stock PostgREST.
PGRST_* environment variables override the file, as they do for PostgREST
(db-max-rows -> PGRST_DB_MAX_ROWS).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from loopctl.config import REPO_ROOT

DEFAULT_PATH = REPO_ROOT / "postgrest.conf"
_LINE = re.compile(r'^\s*([a-z][a-z0-9.-]*)\s*=\s*(.*?)\s*$')


@dataclass(frozen=True)
class PostgrestConfig:
    db_uri: str = ""
    db_schemas: tuple[str, ...] = ("api",)
    db_anon_role: str = "loopctl_anon"
    db_pre_request: str = ""
    db_max_rows: int | None = 1000
    db_pool: int = 10
    jwt_secret: str = ""
    server_port: int = 3000
    raw: dict[str, str] = field(default_factory=dict)


def _unquote(value: str) -> str:
    value = value.split(" #", 1)[0].strip() if not value.startswith('"') else value
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            values[m.group(1)] = _unquote(m.group(2))
    return values


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> PostgrestConfig:
    environ = dict(os.environ) if environ is None else environ
    path = path or Path(environ.get("LOOPCTL_POSTGREST_CONF", DEFAULT_PATH))
    values = parse(path.read_text()) if path.exists() else {}
    for key in ("db-uri", "db-schemas", "db-anon-role", "db-pre-request", "db-max-rows",
                "db-pool", "jwt-secret", "server-port"):
        env_key = "PGRST_" + key.upper().replace("-", "_")
        if env_key in environ:
            values[key] = environ[env_key]
    max_rows = values.get("db-max-rows", "1000").strip()
    return PostgrestConfig(
        db_uri=values.get("db-uri", ""),
        db_schemas=tuple(s.strip() for s in values.get("db-schemas", "api").split(",")
                         if s.strip()),
        db_anon_role=values.get("db-anon-role", "loopctl_anon"),
        db_pre_request=values.get("db-pre-request", "").strip(),
        db_max_rows=int(max_rows) if max_rows else None,
        db_pool=int(values.get("db-pool", "10") or 10),
        jwt_secret=values.get("jwt-secret", ""),
        server_port=int(values.get("server-port", "3000") or 3000),
        raw=values,
    )
