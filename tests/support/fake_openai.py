"""A local stand-in for OpenAI's Images API that the real `openai` client talks to.

    with fake_openai() as fake:
        fake.script(fake.rate_limited(retry_after="0.01"), fake.success())
        provider = OpenAIProvider(api_key="test", base_url=fake.base_url, ...)
        ...
        assert len(fake.requests) == 2

POST /v1/images/generations answers with the next scripted response, or a
success when the script is empty. Every request is recorded (path, headers,
JSON body, arrival time), so a test can assert how many generations were
attempted and how far apart. A scripted response with a gate is held until the
test opens it (`held = fake.held(); fake.script(held); ...; held.gate.set()`),
so a generation can be kept in flight deterministically.

POST /v1/chat/completions (the dish model) answers from its own script
(`fake.script_chat(...)`), else with `fake.dish_answer` as structured output:
`chat_success(answer)`, and the failure switches `chat_malformed()`,
`chat_refusal()`, `server_error()` and `slow(seconds)`. `fake.chat_requests` lists them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.image.adapters.providers.offline import placeholder_png

# What a 1024x1024 medium image of the 2.5 models reports: 439 output image tokens.
DEFAULT_USAGE = {
    "input_text_tokens": 57,
    "input_image_tokens": 0,
    "output_image_tokens": 439,
    "output_text_tokens": 0,
}

# What a short recipe costs the dish model.
CHAT_USAGE = {"prompt_tokens": 412, "completion_tokens": 24}


@dataclass(frozen=True)
class Scripted:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    # For a success: the image bytes to return (None: a PNG derived from the prompt).
    image: bytes | None = None
    usage: dict[str, int] | None = None
    # For a chat success: the message content (a JSON text unless malformed) or a refusal.
    content: str | None = None
    refusal: str | None = None
    # When set, the answer waits until the gate is opened (or the fake stops).
    gate: threading.Event | None = field(default=None, compare=False)

    def held(self) -> Scripted:
        """This answer, held until its gate opens."""
        return replace(self, gate=threading.Event())


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # time.monotonic() when the request arrived.
    at: float = 0.0


def image_for(prompt: str) -> bytes:
    """The PNG the fake returns for a prompt when a success names no image."""
    return placeholder_png(hashlib.sha256(b"fake-openai:" + prompt.encode()).digest(), 16, 16)


def _error(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


class FakeOpenAI:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._script: deque[Scripted] = deque()
        self._chat_script: deque[Scripted] = deque()
        # What a chat success says when its script is empty.
        self.dish_answer: dict[str, Any] = {
            "dish": "banana bread",
            "cuisine": "american",
            "main_ingredients": ["banana", "flour"],
        }
        self._requests: list[ReceivedRequest] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )

    # -- lifecycle

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # lets slow responses give up at once
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting

    def script(self, *responses: Scripted) -> None:
        """Answer the next requests with these, in order; then successes again."""
        with self._lock:
            self._script.extend(responses)

    def script_chat(self, *responses: Scripted) -> None:
        """Answer the next chat completions with these, in order; then dish_answer."""
        with self._lock:
            self._chat_script.extend(responses)

    @property
    def chat_requests(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path.rstrip("/") == "/v1/chat/completions"]

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` requests have arrived; False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._requests) >= count, timeout)

    def held(self, answer: Scripted | None = None) -> Scripted:
        """`answer` (by default a success) held until its `gate` is set."""
        return (answer or self.success()).held()

    @staticmethod
    def success(
        image: bytes | None = None, usage: dict[str, int] | None = DEFAULT_USAGE
    ) -> Scripted:
        """An image (by default one derived from the prompt) with `usage` (None: no usage)."""
        return Scripted(200, image=image, usage=usage)

    @staticmethod
    def rate_limited(retry_after: str | None = "0.01") -> Scripted:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return Scripted(
            429,
            _error(
                "Rate limit reached for images per minute. Please try again in 1s.",
                "requests",
                "rate_limit_exceeded",
            ),
            headers,
        )

    @staticmethod
    def insufficient_quota() -> Scripted:
        return Scripted(
            429,
            _error(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
        )

    @staticmethod
    def server_error(status: int = 500, retry_after: str | None = None) -> Scripted:
        """A 5xx; `retry_after` (OpenAI sends none) only shortens the client's backoff."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return Scripted(
            status,
            _error("The server had an error processing your request.", "server_error", None),
            headers,
        )

    @staticmethod
    def content_policy(code: str = "moderation_blocked") -> Scripted:
        return Scripted(
            400,
            _error(
                "Your request was rejected by the safety system. Your request may contain "
                "content that is not allowed by our safety system.",
                "image_generation_user_error",
                code,
            ),
        )

    @staticmethod
    def slow(seconds: float) -> Scripted:
        """A success that arrives only after `seconds` (for client timeouts)."""
        return Scripted(200, delay_seconds=seconds, usage=DEFAULT_USAGE)

    @staticmethod
    def chat_success(answer: dict[str, Any], usage: dict[str, int] | None = None) -> Scripted:
        """A structured answer; usage is prompt_tokens and completion_tokens."""
        return Scripted(200, content=json.dumps(answer), usage=usage or CHAT_USAGE)

    @staticmethod
    def chat_malformed() -> Scripted:
        return Scripted(200, content="{not json", usage=CHAT_USAGE)

    @staticmethod
    def chat_refusal() -> Scripted:
        return Scripted(200, refusal="I can't help with that.", usage=CHAT_USAGE)

    # -- serving

    def _next(self) -> Scripted:
        with self._lock:
            return self._script.popleft() if self._script else self.success()

    def _next_chat(self) -> Scripted:
        with self._lock:
            if self._chat_script:
                return self._chat_script.popleft()
            return self.chat_success(self.dish_answer)

    def _record(self, request: ReceivedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                headers = {name.lower(): value for name, value in self.headers.items()}
                fake._record(ReceivedRequest(self.path, headers, body, time.monotonic()))
                path = self.path.rstrip("/")
                if path not in ("/v1/images/generations", "/v1/chat/completions"):
                    self._send(404, _error(f"no route {self.path}", "invalid_request_error", None))
                    return
                chat = path == "/v1/chat/completions"
                scripted = fake._next_chat() if chat else fake._next()
                if scripted.delay_seconds and fake._stopping.wait(scripted.delay_seconds):
                    return
                if scripted.gate is not None:
                    while not scripted.gate.wait(0.02):
                        if fake._stopping.is_set():
                            return
                if scripted.status != 200:
                    self._send(scripted.status, scripted.body or {}, scripted.headers)
                    return
                if chat:
                    self._send(200, _chat_body(scripted, str(body.get("model", ""))))
                    return
                self._send(200, _success_body(scripted, str(body.get("prompt", ""))))

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.send_header("x-request-id", f"req_fake_{time.monotonic_ns()}")
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


def _chat_body(scripted: Scripted, model: str) -> dict[str, Any]:
    usage = scripted.usage if scripted.usage and "prompt_tokens" in scripted.usage else CHAT_USAGE
    return {
        "id": f"chatcmpl-fake{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": scripted.content,
                    "refusal": scripted.refusal,
                },
            }
        ],
        "usage": {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        },
    }


def _success_body(scripted: Scripted, prompt: str) -> dict[str, Any]:
    image = scripted.image if scripted.image is not None else image_for(prompt)
    body: dict[str, Any] = {
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(image).decode()}],
        "output_format": "png",
    }
    usage = scripted.usage
    if usage is not None:
        inputs = usage["input_text_tokens"] + usage["input_image_tokens"]
        outputs = usage["output_image_tokens"] + usage["output_text_tokens"]
        body["usage"] = {
            "input_tokens": inputs,
            "input_tokens_details": {
                "text_tokens": usage["input_text_tokens"],
                "image_tokens": usage["input_image_tokens"],
            },
            "output_tokens": outputs,
            "output_tokens_details": {
                "image_tokens": usage["output_image_tokens"],
                "text_tokens": usage["output_text_tokens"],
            },
            "total_tokens": inputs + outputs,
        }
    return body


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    try:
        yield fake
    finally:
        fake.stop()
