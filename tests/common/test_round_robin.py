"""The channel to a replicated service (ImageService's to BudgetService)
spreads its calls round-robin over every address of its target, plaintext or
TLS; with TLS and an address list, RECIPEIMAGE_BUDGET_TLS_SERVER_NAME names
the host the certificates carry."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest

from services.common.config import ConfigError
from services.common.server import RunningServer, ServerSettings, start_server
from services.common.transport import (
    ServerTls,
    WireLimits,
    budget_channel_tls_from_env,
    open_channel,
)
from tests.support.tls import make_certificates

SERVICE = "test.Whoami"


@contextmanager
def servers(names: list[str], tls: ServerTls | None = None) -> Iterator[list[RunningServer]]:
    """One server per name, each answering its own name."""
    with ExitStack() as stack:
        started = []
        for name in names:

            def register(server: grpc.Server, name: str = name) -> None:
                handler = grpc.unary_unary_rpc_method_handler(lambda _r, _c: name.encode())
                server.add_generic_rpc_handlers(
                    [grpc.method_handlers_generic_handler(SERVICE, {"Call": handler})]
                )

            running = start_server(ServerSettings("127.0.0.1:0", 2, 8, 0, tls=tls), register, [])
            stack.callback(running.stop, 0)
            started.append(running)
        yield started


def answers(channel: grpc.Channel, calls: int) -> Counter[bytes]:
    call = channel.unary_unary(f"/{SERVICE}/Call")
    return Counter(call(b"", timeout=10, wait_for_ready=True) for _ in range(calls))


def address_list(running: list[RunningServer]) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{server.port}" for server in running)


def test_calls_spread_over_every_address_of_the_target() -> None:
    with (
        servers(["a", "b"]) as running,
        open_channel(address_list(running), None, WireLimits()) as channel,
    ):
        # The first calls may all go to the first address ready.
        answers(channel, 20)
        assert answers(channel, 20) == {b"a": 10, b"b": 10}


def test_tls_over_an_address_list_checks_the_configured_server_name(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    env = {
        "RECIPEIMAGE_BUDGET_TLS_CA_FILE": str(certs.ca_file),
        "RECIPEIMAGE_BUDGET_TLS_CERT_FILE": str(certs.mutual.client.cert_file),
        "RECIPEIMAGE_BUDGET_TLS_KEY_FILE": str(certs.mutual.client.key_file),
        "RECIPEIMAGE_BUDGET_TLS_SERVER_NAME": "localhost",
    }
    named = budget_channel_tls_from_env(env)
    assert named is not None and named.server_name == "localhost"
    with servers(["a", "b"], certs.mutual.server) as running:
        target = address_list(running)
        with open_channel(target, named, WireLimits()) as channel:
            answers(channel, 20)
            assert answers(channel, 20) == {b"a": 10, b"b": 10}
        # Without the name, the certificate is checked against the address
        # list itself, which no certificate names.
        unnamed = budget_channel_tls_from_env({**env, "RECIPEIMAGE_BUDGET_TLS_SERVER_NAME": ""})
        with open_channel(target, unnamed, WireLimits()) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(f"/{SERVICE}/Call")(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # A name for a certificate the servers do not carry is refused too.
        wrong = budget_channel_tls_from_env(
            {**env, "RECIPEIMAGE_BUDGET_TLS_SERVER_NAME": "budget.example.com"}
        )
        with open_channel(target, wrong, WireLimits()) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(f"/{SERVICE}/Call")(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_server_name_needs_tls() -> None:
    with pytest.raises(ConfigError, match="RECIPEIMAGE_BUDGET_TLS_SERVER_NAME"):
        budget_channel_tls_from_env({"RECIPEIMAGE_BUDGET_TLS_SERVER_NAME": "localhost"})
