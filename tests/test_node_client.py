"""The Node.js client (clients/node) against a running pair: its own tests
(`node --test`) generate an image, read limits and stats, and decode a
refusal's google.rpc details, with tokens minted here; once in plaintext and
once over mutual TLS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from services.budget.domain.limits import TierLimits
from services.common.auth import Authenticator, Role
from tests.support.budget_server import tiers
from tests.support.image_server import running_pair
from tests.support.tls import TlsPair, make_certificates

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
USER = "node-user"
LIMITED = "node-limited-user"


def tls_env(tls: TlsPair | None) -> dict[str, str]:
    if tls is None:
        return {}
    client = tls.client
    assert client.cert_file is not None and client.key_file is not None
    return {
        "RECIPEIMAGE_TEST_TLS_CA_FILE": str(client.ca_file),
        "RECIPEIMAGE_TEST_TLS_CERT_FILE": str(client.cert_file),
        "RECIPEIMAGE_TEST_TLS_KEY_FILE": str(client.key_file),
    }


def run_node_tests(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NODE), "--test", "--test-reporter=tap", "clients/node/test/"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.skipif(NODE is None, reason="node is not installed: the Node.js client is not run")
@pytest.mark.parametrize("transport", ["plaintext", "mutual_tls"])
def test_the_node_client_against_the_running_pair(
    sqlite_databases, tmp_path: Path, authenticator: Authenticator, transport: str
) -> None:  # type: ignore[no-untyped-def]
    assert (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "node modules are missing: run `make node_modules/.installed-stamp`"
    )
    database_url = str(sqlite_databases.create_copy(tmp_path))
    tls = make_certificates(tmp_path).mutual if transport == "mutual_tls" else None
    # The free tier's daily limit is below one image: LIMITED is refused.
    free = TierLimits(daily_micros=1_000, monthly_micros=5_000_000, per_generation_micros=80_000)
    with running_pair(
        database_url, authenticator, budget_overrides={"tiers": tiers(free=free)}, tls=tls
    ) as pair:
        pair.budget.set_tier(USER, "premium")
        result = run_node_tests(
            {
                "RECIPEIMAGE_TEST_BUDGET_ADDRESS": pair.budget.target,
                "RECIPEIMAGE_TEST_IMAGE_ADDRESS": f"127.0.0.1:{pair.port}",
                "RECIPEIMAGE_TEST_USER_ID": USER,
                "RECIPEIMAGE_TEST_USER_TOKEN": authenticator.mint(Role.USER, USER),
                "RECIPEIMAGE_TEST_LIMITED_TOKEN": authenticator.mint(Role.USER, LIMITED),
                **tls_env(tls),
            }
        )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    counts = dict(re.findall(r"^# (pass|fail|skipped|todo) (\d+)$", result.stdout, re.M))
    assert counts.get("fail") == "0", report
    assert counts.get("skipped") == "0", report  # every test ran against the pair
    assert int(counts.get("pass", "0")) >= 5, report
