"""The README is the front door: its settings table and its grpcurl commands
must be true. The commands run as printed (only the ports differ) against the
same launcher `make run` uses, with the real grpcurl binary."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETTING = re.compile(r"\b(RECIPEIMAGE_[A-Z0-9_]+)\b")


def settings_in_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        names |= set(SETTING.findall(path.read_text()))
    return names


def settings_in_table() -> set[str]:
    rows = [line for line in README.splitlines() if line.startswith("| `RECIPEIMAGE_")]
    return {SETTING.search(row).group(1) for row in rows}


def test_every_setting_is_in_the_readme_table_and_nothing_else_is() -> None:
    in_code = settings_in_code()
    in_table = settings_in_table()
    assert in_code, "no RECIPEIMAGE_ settings found in services/"
    assert sorted(in_code - in_table) == [], "settings missing from the README table"
    assert sorted(in_table - in_code) == [], "README documents settings the code does not read"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readme_grpcurl_block() -> str:
    section = README.split("## Calling it with grpcurl", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def launched_pair(tmp_path: Path):
    """`make run`'s launcher in a scratch directory, on free ports."""
    budget_port, image_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RECIPEIMAGE_") and key != "OPENAI_API_KEY"
    }
    env |= {
        "RECIPEIMAGE_BUDGET_ADDRESS": f"127.0.0.1:{budget_port}",
        "RECIPEIMAGE_IMAGE_ADDRESS": f"127.0.0.1:{image_port}",
        "RECIPEIMAGE_BUDGET_TARGET": f"127.0.0.1:{budget_port}",
        "RECIPEIMAGE_BUDGET_METRICS_PORT": "0",
        "RECIPEIMAGE_IMAGE_METRICS_PORT": "0",
    }
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "services.devrun"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in launcher.stdout], daemon=True
    )
    reader.start()
    banner: list[str] = []
    try:
        while not banner or not banner[-1].startswith("Press Ctrl-C"):
            try:
                banner.append(lines.get(timeout=90))
            except queue.Empty:
                pytest.fail(f"the launcher did not start; it printed: {''.join(banner)!r}")
        yield tmp_path, env, budget_port, image_port, "".join(banner)
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)


def test_readme_grpcurl_commands_work_as_printed(launched_pair) -> None:
    workdir, env, budget_port, image_port, banner = launched_pair
    script = (
        readme_grpcurl_block()
        .replace("127.0.0.1:50051", f"127.0.0.1:{budget_port}")
        .replace("127.0.0.1:50052", f"127.0.0.1:{image_port}")
    )
    # Generate twice, as the README suggests, to see the cache at work.
    generate = next(line for line in script.splitlines() if "GenerateImage" in line)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{script}\n{generate}\n"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "recipeimage.budget.v1.BudgetService" in out  # list, through reflection
    assert '"status": "SERVING"' in out  # health
    assert '"source": "IMAGE_SOURCE_GENERATED"' in out
    assert '"source": "IMAGE_SOURCE_CACHE_EXACT"' in out
    assert '"tier": "USER_TIER_FREE"' in out  # GetLimits
    assert '"total_generations": "1"' in out  # GetUsageStats, run before the second generation


def test_launcher_banner_commands_work_as_printed(launched_pair) -> None:
    workdir, env, _budget_port, _image_port, banner = launched_pair
    commands = banner.split("Try:\n", 1)[1].split("Press Ctrl-C", 1)[0]
    export = next(line for line in banner.splitlines() if "export TOKEN=" in line)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{export.strip()}\n{commands}"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "recipeimage.budget.v1.BudgetService" in result.stdout
    assert '"source": "IMAGE_SOURCE_GENERATED"' in result.stdout
    assert '"total_generations": "1"' in result.stdout
