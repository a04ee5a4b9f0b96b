"""Real service processes (the recipeimage-budget and recipeimage-image entry
points), for tests of replicas and of process faults.

    process = start_service("image", env)      # waits until it serves
    process.port, process.messages("stopped"), process.handled("image-settler")
    process.kill()                              # SIGKILL, as a crash
    process.terminate()                         # SIGTERM, as a rollout

The environment is the test's own (clean_env() is the caller's environment
without any RECIPEIMAGE_ variable or OpenAI key); every JSON log line the
process writes is parsed as it arrives, and the port is read from its
"serving" line, so a process may bind 127.0.0.1:0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "budget": "import sys; from services.budget.main import main; sys.exit(main())",
    "image": "import sys; from services.image.main import main; sys.exit(main())",
}


def clean_env() -> dict[str, str]:
    """This process's environment without any recipeimage setting or OpenAI key."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RECIPEIMAGE_") and key != "OPENAI_API_KEY"
    }


@dataclass
class ServiceProcess:
    service: str
    process: subprocess.Popen[str]
    env: dict[str, str]
    port: int = 0
    # Every JSON log line the process wrote, parsed, as it arrives.
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def messages(self, message: str) -> list[dict[str, Any]]:
        return [entry for entry in list(self.logs) if entry.get("message") == message]

    def handled(self, job: str) -> int:
        """How many things a periodic job of this process reported handling."""
        prefix = f"{job} handled "
        return sum(
            int(entry.get("count", 0))
            for entry in list(self.logs)
            if str(entry.get("message", "")).startswith(prefix)
        )

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGTERM when still running, SIGKILL when it does not end within 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_service(service: str, env: Mapping[str, str]) -> ServiceProcess:
    """Start the service's entry point with env; it may not be serving yet."""
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY_POINTS[service]],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = ServiceProcess(service, process, dict(env))
    threading.Thread(target=_collect_logs, args=(started,), daemon=True).start()
    return started


def wait_until_serving(started: ServiceProcess, timeout: float = 60) -> ServiceProcess:
    """Block until the process logged "serving" (its port is set then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in started.messages("serving"):
            started.port = int(entry["port"])
            return started
        if started.process.poll() is not None:
            break
        time.sleep(0.05)
    started.stop()
    raise RuntimeError(f"a {started.service} process did not start; it logged {started.logs!r}")


def start_service(service: str, env: Mapping[str, str], timeout: float = 60) -> ServiceProcess:
    """Start the service and wait until it serves."""
    return wait_until_serving(spawn_service(service, env), timeout)


@contextmanager
def service_process(service: str, env: Mapping[str, str]) -> Iterator[ServiceProcess]:
    """A serving process, stopped (SIGTERM) at the end."""
    started = start_service(service, env)
    try:
        yield started
    finally:
        started.stop()


def _collect_logs(started: ServiceProcess) -> None:
    stream = started.process.stderr
    assert stream is not None
    for line in stream:
        try:
            started.logs.append(json.loads(line))
        except ValueError:
            started.logs.append({"message": line.rstrip()})
