"""One delivery attempt: claim rows from SQL, POST the signed body, report the outcome.

What happens after an attempt (retry time, exhaustion, disabling the endpoint) is decided
in SQL by app.webhook_record_attempt; this module only performs the HTTP request."""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from psycopg import AsyncConnection

from loopctl.worker import signing
from loopctl.worker.targets import TargetRefused, check_target

USER_AGENT = "loopctl-webhooks/1"
SNIPPET_BYTES = 1000


@dataclass(frozen=True)
class ClaimedDelivery:
    tenant_id: str
    delivery_id: str
    webhook_id: str
    attempt: int
    lease_token: str
    message_id: str
    url: str
    secret: str
    event_type: str
    body: str


@dataclass(frozen=True)
class RetryPolicy:
    schedule: list[float]
    jitter: float
    disable_after: int


@dataclass
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_snippet: str | None = None
    retry_after_seconds: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def claim(conn: AsyncConnection[Any], worker: str, limit: int,
                lease_seconds: float) -> list[ClaimedDelivery]:
    cur = await conn.execute(
        "select tenant_id::text, delivery_id::text, webhook_id::text, attempt,"
        " lease_token::text, message_id, url, secret, event_type, body"
        " from app.webhook_claim(%s, %s, %s)",
        (worker, limit, lease_seconds),
    )
    return [ClaimedDelivery(*row) for row in await cur.fetchall()]


async def next_due(conn: AsyncConnection[Any]) -> float | None:
    cur = await conn.execute("select app.webhook_next_due()")
    row = await cur.fetchone()
    return None if row is None else row[0]


async def record(conn: AsyncConnection[Any], worker: str, delivery: ClaimedDelivery,
                 result: AttemptResult, policy: RetryPolicy) -> str:
    cur = await conn.execute(
        "select app.webhook_record_attempt(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s::double precision[], %s, %s)",
        (delivery.tenant_id, delivery.delivery_id, delivery.lease_token, delivery.attempt,
         worker, result.started_at, result.duration_ms, result.status_code, result.error,
         result.response_snippet, result.retry_after_seconds, policy.schedule, policy.jitter,
         policy.disable_after),
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def attempt(client: httpx.AsyncClient, delivery: ClaimedDelivery, *,
                  timeout: float, allow_private: bool) -> AttemptResult:
    """POSTs one delivery; never raises for network or receiver problems (they are results)."""
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    result = AttemptResult(started_at=started_at, duration_ms=0)
    try:
        async with asyncio.timeout(timeout):
            await check_target(delivery.url, allow_private=allow_private)
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **signing.headers(delivery.secret, delivery.message_id, timestamp,
                                  delivery.body),
            }
            async with client.stream("POST", delivery.url, content=delivery.body.encode(),
                                     headers=headers) as response:
                result.status_code = response.status_code
                result.retry_after_seconds = parse_retry_after(
                    response.headers.get("retry-after"))
                snippet = bytearray()
                async for chunk in response.aiter_bytes():
                    snippet.extend(chunk)
                    if len(snippet) >= SNIPPET_BYTES:
                        break
                result.response_snippet = snippet[:SNIPPET_BYTES].decode("utf-8", "replace")
            if not result.succeeded:
                result.error = f"HTTP {result.status_code}"
    except TargetRefused as exc:
        result.error = str(exc)
    except TimeoutError:
        result.error = f"timed out after {timeout:g} s"
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:1000]
    result.duration_ms = int((time.monotonic() - t0) * 1000)
    return result
