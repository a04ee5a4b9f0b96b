"""recipeimage-dev (`make run`): both services on this machine, ready to call.

Creates ./var (SQLite files, images, a token secret made on first start),
starts BudgetService and ImageService as child processes, waits until both
report SERVING, then prints an admin token and grpcurl commands that work as
printed. Ctrl-C (or SIGTERM) shuts both down gracefully.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import Authenticator, Role, load_or_create_secret
from services.common.config import env_str

SERVICES = (
    (
        "budget",
        "RECIPEIMAGE_BUDGET_ADDRESS",
        "127.0.0.1:50051",
        "recipeimage.budget.v1.BudgetService",
    ),
    ("image", "RECIPEIMAGE_IMAGE_ADDRESS", "127.0.0.1:50052", "recipeimage.image.v1.ImageService"),
)
STARTUP_TIMEOUT_SECONDS = 60


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("RECIPEIMAGE_JWT_SECRET"):
        secret_file = Path(env_str(env, "RECIPEIMAGE_JWT_SECRET_FILE", "var/jwt-secret"))
        load_or_create_secret(secret_file)
        env["RECIPEIMAGE_JWT_SECRET_FILE"] = str(secret_file)
    return env


def _wait_until_serving(address: str, service: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{service} exited with status {child.returncode} at start")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"{service} did not become healthy at {address} in time")


def _grpcurl() -> str:
    local = Path(sys.executable).parent / "grpcurl"
    return str(local) if local.exists() else "grpcurl"


def _banner(env: dict[str, str], addresses: dict[str, str]) -> str:
    secret = (
        env.get("RECIPEIMAGE_JWT_SECRET") or Path(env["RECIPEIMAGE_JWT_SECRET_FILE"]).read_text()
    )
    authenticator = Authenticator(
        secret.strip(), audience=env.get("RECIPEIMAGE_JWT_AUDIENCE") or None
    )
    token = authenticator.mint(Role.ADMIN, "local-admin", ttl_seconds=24 * 3600)
    grpcurl = shlex.quote(_grpcurl())
    auth = shlex.quote(f"authorization: Bearer {token}")
    budget, image = addresses["budget"], addresses["image"]
    generate = '{"user_id":"demo-user","recipe":{"title":"Broccoli Soup with Coconut Milk"}}'
    stats = '{"user_id":"demo-user","period":"STATS_PERIOD_DAY"}'
    return "\n".join(
        [
            "",
            f"recipeimage is running: BudgetService on {budget}, ImageService on {image}.",
            "An admin token (valid 24 h; mint more with .venv/bin/recipeimage-token):",
            f"  export TOKEN={token}",
            "Try:",
            f"  {grpcurl} -plaintext {budget} list",
            f"  {grpcurl} -plaintext -H {auth} -d '{generate}' \\\n"
            f"      {image} recipeimage.image.v1.ImageService/GenerateImage",
            f"  {grpcurl} -plaintext -H {auth} -d '{stats}' \\\n"
            f"      {budget} recipeimage.budget.v1.BudgetService/GetUsageStats",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def main() -> int:
    env = _child_env()
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop_all(_signum: int = 0, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for _name, child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    addresses = {}
    try:
        for name, address_var, default_address, service in SERVICES:
            code = f"from services.{name}.main import main; raise SystemExit(main())"
            child = subprocess.Popen([sys.executable, "-c", code], env=env)
            children.append((name, child))
            addresses[name] = env_str(env, address_var, default_address)
            _wait_until_serving(addresses[name], service, child)
    except RuntimeError as exc:
        print(f"recipeimage-dev: {exc}", file=sys.stderr)
        stop_all()
        for _name, child in children:
            child.wait()
        return 1
    print(_banner(env, addresses), flush=True)
    while not stopping and all(child.poll() is None for _name, child in children):
        time.sleep(0.5)
    stop_all()
    status = 0
    for name, child in children:
        child.wait()
        if child.returncode not in (0, -signal.SIGTERM):
            print(f"recipeimage-dev: {name} exited with status {child.returncode}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
