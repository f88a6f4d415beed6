"""A local webhook receiver for tests and benchmarks: a real HTTP server on 127.0.0.1 that
verifies every request with the `standardwebhooks` library (the reference implementation,
not our own signing code), deduplicates by webhook-id and can misbehave on purpose."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Endpoint:
    """How one path behaves. Failures are counted per webhook-id (per message)."""

    secret: str
    fail_first: int = 0  # answer 500 to the first N attempts of each message
    always_fail: bool = False
    retry_after: str | None = None  # sent with failures
    hold_first: bool = False  # hold each message's first request until release()
    delay_seconds: float = 0.0


@dataclass
class Received:
    path: str
    message_id: str
    body: str
    verified: bool
    error: str | None
    received_at: float  # time.time()
    status: int = 0


@dataclass
class Receiver:
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    # webhook-id -> body, kept once: what a deduplicating consumer processes
    processed: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body are separate writes: without this, Nagle plus delayed
                # ACKs stall every keep-alive response by ~40 ms.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        self.released.set()

    # -- queries -------------------------------------------------------------------------
    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return bool(predicate(self))

    # -- handling ------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length).decode("utf-8", "replace")
        path = request.path
        message_id = request.headers.get("webhook-id", "")
        endpoint = self.endpoints.get(path)
        verified, error = False, None
        if endpoint is None:
            error = "unknown path"
        else:
            try:
                Webhook(endpoint.secret).verify(body, dict(request.headers.items()))
                verified = True
            except (WebhookVerificationError, ValueError) as exc:
                error = f"signature: {exc}"
        entry = Received(path, message_id, body, verified, error, time.time())
        with self._lock:
            self.requests.append(entry)
            attempt = sum(1 for r in self.requests if r.message_id == message_id)
        if endpoint is None or not verified:
            self._respond(request, entry, 400, error or "bad request")
            return
        if endpoint.delay_seconds:
            time.sleep(endpoint.delay_seconds)
        if endpoint.hold_first and attempt == 1:
            self.held.set()
            self.released.wait(60)
        if endpoint.always_fail or attempt <= endpoint.fail_first:
            self._respond(request, entry, 500, "failing on purpose", endpoint.retry_after)
            return
        with self._lock:
            if message_id in self.processed:
                self.duplicates += 1
            else:
                self.processed[message_id] = body
        self._respond(request, entry, 200, "ok")

    @staticmethod
    def _respond(request: BaseHTTPRequestHandler, entry: Received, status: int, text: str,
                 retry_after: str | None = None) -> None:
        entry.status = status
        payload = text.encode()
        try:
            request.send_response(status)
            request.send_header("content-type", "text/plain")
            request.send_header("content-length", str(len(payload)))
            if retry_after is not None:
                request.send_header("retry-after", retry_after)
            request.end_headers()
            request.wfile.write(payload)
        except OSError:
            pass  # the worker went away (killed mid-delivery): nothing to answer
