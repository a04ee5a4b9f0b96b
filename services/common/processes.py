"""Several server processes on one port, as in grpc's multiprocessing example:
a parent reserves the port with SO_REUSEPORT, spawns the workers (each builds
its own server, database pool and jobs, so no gRPC state ever crosses a fork),
restarts a worker that dies after it served, forwards SIGTERM/SIGINT, and
exits when every worker has drained.

Workers are spawned, not forked: a fresh interpreter per worker, so nothing
the parent imported or opened (gRPC's core, a database connection, a
logging thread) is inherited half-initialized.

A worker that exits before it reported ready (bad settings, a database that
is not there, a port it cannot bind) stops the whole service with its exit
status: restarting it would fail the same way. A worker that dies after it
served (killed, out of memory) is restarted; if that happens more than
MAX_RESTARTS times within RESTART_WINDOW_SECONDS the parent gives up and
exits 1, so a crash loop is visible to whatever runs the service.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

from services.common.worker_metrics import serve_workers_metrics

log = logging.getLogger("recipeimage.processes")

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
# How long past the grace period a worker may take to exit before it is killed.
EXIT_MARGIN_SECONDS = 10.0


@dataclass(frozen=True)
class WorkerSeat:
    """What one worker is told and tells: its index (0..count-1, kept across
    restarts: its metrics' `worker` label), the address with the real port,
    the event it sets once it serves, and where it writes the loopback port
    of its own /metrics (services/common/worker_metrics.py)."""

    index: int
    address: str
    ready: Event
    metrics_port: Synchronized[int]

    def serving(self, metrics_port: int | None) -> None:
        """Tell the parent this worker serves (and its metrics port, if any)."""
        if metrics_port is not None:
            self.metrics_port.value = metrics_port
        self.ready.set()


# A module-level function taking a WorkerSeat (spawn pickles it by name).
WorkerTarget = Callable[[WorkerSeat], None]


def split_address(address: str) -> tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reserve_port(address: str) -> tuple[socket.socket, str]:
    """Bind (never listen on) a SO_REUSEPORT socket at address, so the port is
    ours (port 0: the OS picks one) and only SO_REUSEPORT servers of this
    user can share it. Returns the socket (keep it open while the workers
    run) and the address with the real port."""
    host, port = split_address(address)
    family, kind, proto, _name, target = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(target)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    return sock, join_address(host, sock.getsockname()[1])


class Supervisor:
    def __init__(self, count: int, address: str, target: WorkerTarget, grace_seconds: float):
        self._context = multiprocessing.get_context("spawn")
        self._count = count
        self._address = address
        self._target = target
        self._grace_seconds = grace_seconds
        self._workers: dict[int, tuple[SpawnProcess, WorkerSeat]] = {}
        self._restarts: list[float] = []

    def run(self, stopping: threading.Event) -> int:
        """Start the workers and keep them running until stopping is set (or a
        worker cannot start); then stop them all. The exit status."""
        for index in range(self._count):
            self._start(index)
        log.info(
            "serving with worker processes",
            extra={"address": self._address, "processes": self._count},
        )
        status = 0
        while not stopping.wait(0.2):
            failure = self._replace_dead_workers()
            if failure is not None:
                status = failure
                break
        stopped = self._stop_all()
        return status or stopped

    def metrics_ports(self) -> dict[int, int]:
        """worker index -> the loopback port of its /metrics, for those serving one."""
        ports = {index: seat.metrics_port.value for index, (_p, seat) in self._workers.items()}
        return {index: port for index, port in ports.items() if port}

    def _start(self, index: int) -> None:
        seat = WorkerSeat(index, self._address, self._context.Event(), self._context.Value("i", 0))
        process = self._context.Process(target=self._target, args=(seat,), name=f"worker-{index}")
        process.start()
        self._workers[index] = (process, seat)
        log.info("worker started", extra={"worker": index, "worker_pid": process.pid})

    def _replace_dead_workers(self) -> int | None:
        """Restart each worker that died after it served; the status to exit
        with when one died before it served, or restarts are looping."""
        for index, (process, seat) in list(self._workers.items()):
            if process.exitcode is None:
                continue
            facts = {"worker": index, "worker_pid": process.pid, "exit_code": process.exitcode}
            if not seat.ready.is_set():
                log.error("worker could not start; stopping", extra=facts)
                return process.exitcode or 1
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_SECONDS]
            if len(self._restarts) >= MAX_RESTARTS:
                log.error("workers keep dying; stopping", extra=facts)
                return 1
            self._restarts.append(now)
            log.warning("worker died; restarting it", extra=facts)
            self._start(index)
        return None

    def _stop_all(self) -> int:
        """SIGTERM every worker (each drains within the grace period), wait,
        kill what outlives the grace period. 1 if any worker failed."""
        for process, _seat in self._workers.values():
            if process.exitcode is None:
                process.terminate()
        deadline = time.monotonic() + self._grace_seconds + EXIT_MARGIN_SECONDS
        status = 0
        for index, (process, _seat) in self._workers.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker did not stop; killing it", extra={"worker": index})
                process.kill()
                process.join()
                status = 1
            elif process.exitcode not in (0, -signal.SIGTERM):
                status = 1
        return status


@dataclass(frozen=True)
class WorkersPlan:
    """How many workers, where they serve, and where the parent serves their
    metrics (port 0: nowhere)."""

    count: int
    address: str
    grace_seconds: float
    metrics_port: int
    metrics_address: str


def serve_with_workers(plan: WorkersPlan, target: WorkerTarget, stopping: threading.Event) -> int:
    """Reserve the address's port, serve the workers' metrics, run the
    workers until stopping is set, and return the exit status."""
    reservation, bound = reserve_port(plan.address)
    with reservation:
        supervisor = Supervisor(plan.count, bound, target, plan.grace_seconds)
        serve_workers_metrics(plan.metrics_port, plan.metrics_address, supervisor.metrics_ports)
        return supervisor.run(stopping)


def stop_when_orphaned(stopping: threading.Event, interval_seconds: float = 1.0) -> None:
    """Set stopping when the parent goes away (killed without forwarding a
    signal), so a worker never outlives its supervisor."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        while not stopping.wait(interval_seconds):
            if not parent.is_alive():
                log.warning("the supervising process is gone; stopping")
                stopping.set()

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
