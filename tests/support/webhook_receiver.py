"""A real HTTP webhook receiver on loopback, for the alert webhook tests.

    with webhook_receiver() as receiver:
        receiver.url("ops")          # http://127.0.0.1:<port>/hooks/ops
        receiver.fail(500)           # answer 500 from now on
        receiver.hang(2.0)           # take 2 s before answering 200
        receiver.recover()           # answer 200 at once
        receiver.requests            # every request received, in order

Each request is recorded when it arrives, before the answer, as a receiver
that did the work but whose answer was lost would have it. It also records
whether two requests with one delivery id were ever in flight at once.

verify() is the README's verification snippet, written again here from the
documented format, not imported from the service: the test checks the
contract a receiver relies on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(secret: str, header: str, body: bytes, now: float, tolerance: int = 300) -> bool:
    """The README's snippet: t and v1 from the header, refuse a stale t, and
    compare HMAC-SHA256(secret, f"{t}.{body}") in constant time."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # the status it is (or was) answered with

    @property
    def delivery_id(self) -> str:
        return self.headers.get("X-Recipeimage-Delivery", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = 200
        self._delay = 0.0
        self._released = threading.Event()
        self._received: list[Received] = []
        self._in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.port = 0

    # -- behaviour

    def fail(self, status: int = 500) -> None:
        with self._lock:
            self._status, self._delay = status, 0.0

    def hang(self, seconds: float) -> None:
        """Answer 200, but only after seconds (beyond a client's timeout)."""
        with self._lock:
            self._status, self._delay = 200, seconds

    def slow(self, seconds: float) -> None:
        """Answer 200 after seconds (within a client's timeout)."""
        self.hang(seconds)

    def recover(self) -> None:
        with self._lock:
            self._status, self._delay = 200, 0.0

    # -- what arrived

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def to(self, name: str) -> list[Received]:
        return [r for r in self.requests if r.path == f"/hooks/{name}"]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return self.requests
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {self.requests!r}")

    # -- the handler's side

    def _arrived(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, float]:
        delivery_id = headers.get("X-Recipeimage-Delivery", "")
        with self._lock:
            if self._in_flight.get(delivery_id):
                self.overlaps.append(delivery_id)
            self._in_flight[delivery_id] = self._in_flight.get(delivery_id, 0) + 1
            self._received.append(Received(path, headers, body, self._status))
            return self._status, self._delay

    def _done(self, delivery_id: str) -> None:
        with self._lock:
            self._in_flight[delivery_id] -= 1

    def _release(self) -> None:
        self._released.set()


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = dict(self.headers.items())
            status, delay = receiver._arrived(self.path, headers, body)
            if delay:
                receiver._released.wait(delay)
            receiver._done(headers.get("X-Recipeimage-Delivery", ""))
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the client gave up waiting
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver._release()
        server.shutdown()
        server.server_close()
        thread.join(5)
