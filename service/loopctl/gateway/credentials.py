"""The gateway's database login: `authenticator` (LOGIN NOINHERIT), password managed here.

Password: LOOPCTL_AUTHENTICATOR_PASSWORD if set; for the embedded cluster one generated
once and kept in the data dir; for an external database one derived from the admin URL's
password (every process serving the same database agrees without sharing a file).
`loopctl migrate` and `loopctl serve` set it with the admin connection.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from loopctl.config import Settings

ROLE = "authenticator"


def _from_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    for _ in range(50):  # a concurrent creator may not have written it yet
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"{path} is empty")


def authenticator_password(settings: Settings, admin_url: str) -> str:
    if settings.authenticator_password:
        return settings.authenticator_password
    if not settings.database_url:
        return _from_file(settings.resolved_data_dir() / "authenticator.password")
    secret = unquote(urlsplit(admin_url).password or "") or admin_url
    return hmac.new(secret.encode(), b"loopctl authenticator", hashlib.sha256).hexdigest()[:40]


def gateway_url(admin_url: str, password: str) -> str:
    """The admin URL with authenticator's credentials instead."""
    parts = urlsplit(admin_url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{ROLE}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def ensure_authenticator(admin_url: str, password: str) -> str:
    """Make authenticator accept `password` (ALTER ROLE only when it does not yet) and
    return the gateway URL."""
    url = gateway_url(admin_url, password)
    try:
        with psycopg.connect(url, connect_timeout=5):
            return url
    except psycopg.OperationalError:
        pass
    for attempt in range(5):
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("alter role {} with login password {}").format(
                    sql.Identifier(ROLE), sql.Literal(password)))
            return url
        except psycopg.errors.InternalError:  # "tuple concurrently updated": retry
            time.sleep(0.1 * (attempt + 1))
    raise RuntimeError("could not set the authenticator password")
