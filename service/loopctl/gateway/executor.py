"""One request = one transaction on a pooled `authenticator` connection, run as PostgREST
runs it, in a single round trip (one simple-query string):

    select auth.authenticate_request('<sha256 of key>')::text; commit;   -- count, commit
    begin [read only];
    select set_config('role', auth.assume_request(...), true);  -- claims, headers, method
    [select <db-pre-request>();]
    <the one SQL call>;
    select current_setting('response.status', true), current_setting('response.headers', true);
    commit;

Literals are quoted here (standard_conforming_strings is forced on for the pool) and every
identifier comes from the catalog, so no request text reaches SQL unquoted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from loopctl.gateway.catalog import Catalog, quote_ident
from loopctl.gateway.errors import HttpError, from_body, from_pg_error
from loopctl.gateway.pgrst_config import PostgrestConfig

log = logging.getLogger("loopctl.gateway")


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise HttpError(400, "invalid_input", "NUL characters are not accepted",
                        pgrst_code="22P05")
    return "'" + value.replace("'", "''") + "'"


def qualified_name(name: str) -> str:
    """schema.function from the config file, quoted part by part."""
    return ".".join(quote_ident(p) for p in name.split("."))


@dataclass(frozen=True)
class Caller:
    """Who sends the request: anonymous, or the SHA-256 hex of an API key."""

    key_hash: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.key_hash is None


@dataclass
class Outcome:
    """What one SQL call returned: rows of its statement(s) and the response settings."""

    rows: list[list[tuple[Any, ...]]]
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    rate: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None

    @property
    def text(self) -> str | None:
        """The single text value of the (last) call statement."""
        last = self.rows[-1] if self.rows else []
        return last[0][-1] if last and last[0] else None


def rate_headers(rate: dict[str, Any] | None) -> dict[str, str]:
    if not rate:
        return {}
    return {"X-RateLimit-Limit": str(rate["limit"]),
            "X-RateLimit-Remaining": str(rate["remaining"]),
            "X-RateLimit-Reset": str(rate["reset"])}


async def _configure(conn: AsyncConnection[Any]) -> None:
    # quote_literal relies on it; it is the default, but a server could say otherwise.
    await conn.execute("set standard_conforming_strings = on")


class Gateway:
    def __init__(self, url: str, config: PostgrestConfig, *, pool_size: int | None = None
                 ) -> None:
        self.config = config
        size = pool_size or config.db_pool
        self.pool = AsyncConnectionPool(
            url, min_size=1, max_size=size, open=False, configure=_configure,
            kwargs={"autocommit": True}, name="loopctl-gateway", timeout=30)
        self.catalog = Catalog(tuple(config.db_schemas))
        self._reload_lock = asyncio.Lock()
        self._pre_request = (f"select {qualified_name(config.db_pre_request)}();"
                             if config.db_pre_request else "")

    async def open(self) -> None:
        await self.pool.open(wait=False)
        try:
            await self.reload_catalog()
        except (psycopg.Error, PoolTimeout) as exc:  # database not up yet: load on demand
            log.warning("schema cache not loaded at startup: %s", exc)

    async def close(self) -> None:
        await self.pool.close()

    async def reload_catalog(self, *, min_age: float = 0.0) -> None:
        """Re-read the catalog (at most once per `min_age` seconds)."""
        async with self._reload_lock:
            if self.catalog.loaded_at and time.monotonic() - self.catalog.loaded_at < min_age:
                return
            async with self.pool.connection() as conn:
                await self.catalog.load(conn)

    async def run(self, caller: Caller, calls: list[str], *, method: str, path: str,
                  headers: dict[str, str], read_only: bool = False) -> Outcome:
        """Run `calls` (SQL statements, each returning rows) in one request transaction.
        Raises HttpError for authentication, rate-limit and database errors."""
        prefix = ""
        if not caller.anonymous:
            assert caller.key_hash is not None
            prefix = (f"select auth.authenticate_request({quote_literal(caller.key_hash)})"
                      "::text; commit;")
        assume = ("select set_config('role', auth.assume_request("
                  f"{'true' if caller.anonymous else 'false'}, "
                  f"{quote_literal(self.config.db_anon_role)}, "
                  f"{quote_literal(json.dumps(headers))}, {quote_literal(method)}, "
                  f"{quote_literal(path)}), true);")
        suffix = ("select current_setting('response.status', true), "
                  "current_setting('response.headers', true); commit;")
        if not caller.anonymous:
            suffix += " select set_config('loopctl.gateway_auth', '', false);"
        query = "".join([
            prefix, "begin read only;" if read_only else "begin;", assume, self._pre_request,
            *(c.rstrip().rstrip(";") + ";" for c in calls), suffix])
        try:
            async with self.pool.connection() as conn:
                return await self._execute(conn, query, caller, len(calls))
        except PoolTimeout:
            raise HttpError(503, "database_unavailable", "no database connection available",
                            headers={"Retry-After": "1"}, pgrst_code="PGRST003") from None

    async def _execute(self, conn: AsyncConnection[Any], query: str, caller: Caller,
                       n_calls: int) -> Outcome:
        cur = conn.cursor()
        try:
            await cur.execute(query)  # no parameters: simple query protocol, many statements
        except psycopg.Error as exc:
            error = from_pg_error(exc, anonymous=caller.anonymous)
            rate = await self._recover(conn, caller)
            error.headers = rate_headers(rate) | error.headers
            raise error from None
        results: list[list[tuple[Any, ...]]] = []
        while True:
            if cur.description is not None:
                results.append(await cur.fetchall())
            if not cur.nextset():
                break
        # results: [auth?] [role] [pre-request?] calls... [response] [reset?]
        rate = claims = None
        if not caller.anonymous:
            auth = json.loads(results.pop(0)[0][0])
            rate = auth.pop("rate", None)
            claims = auth
            results.pop()  # the reset of loopctl.gateway_auth
        response = results.pop()
        call_rows = results[-n_calls:]
        status_text, headers_text = response[0]
        outcome = Outcome(call_rows, rate=rate, claims=claims)
        if status_text:
            try:
                outcome.status = int(status_text)
            except ValueError:
                raise HttpError(500, "invalid_response_status",
                                f"response.status is not a number: {status_text!r}",
                                pgrst_code="PGRST112") from None
        if headers_text:
            try:
                parsed = json.loads(headers_text)
                items = parsed.items() if isinstance(parsed, dict) else (
                    kv for d in parsed for kv in d.items())
                outcome.headers = {str(k): str(v) for k, v in items}
            except (ValueError, TypeError, AttributeError):
                raise HttpError(500, "invalid_response_headers",
                                "response.headers is not a JSON object",
                                pgrst_code="PGRST111") from None
        if outcome.status is not None and outcome.status >= 400:
            # app.error_response: the function committed a record and answers an error.
            body = outcome.text
            error = from_body(outcome.status, json.loads(body) if body else None)
            error.headers = rate_headers(rate) | outcome.headers
            raise error
        return outcome

    async def _recover(self, conn: AsyncConnection[Any], caller: Caller
                       ) -> dict[str, Any] | None:
        """After an error: roll back, and read the rate window counted for this request."""
        try:
            cur = conn.cursor()
            await cur.execute("rollback; select current_setting('loopctl.gateway_auth', true);"
                              " select set_config('loopctl.gateway_auth', '', false)")
            if caller.anonymous:
                return None
            while cur.description is None and cur.nextset():
                pass
            row = await cur.fetchone()
            auth = json.loads(row[0]) if row and row[0] else {}
            rate = auth.get("rate") if isinstance(auth, dict) else None
            return rate if isinstance(rate, dict) else None
        except psycopg.Error:
            return None
