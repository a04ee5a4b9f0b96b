"""The pieces of several server processes that need no process: the setting,
addresses, and the port the parent reserves (the processes themselves:
tests/budget/test_server_processes.py)."""

from __future__ import annotations

import os
import socket

import pytest

from services.common.config import ConfigError
from services.common.processes import join_address, reserve_port, split_address
from services.common.settings import CommonSettings


def test_processes_default_to_the_usable_cores_and_one_keeps_one() -> None:
    assert CommonSettings.from_env({}).server_processes == len(os.sched_getaffinity(0))
    one = {"RECIPEIMAGE_SERVER_PROCESSES": "1"}
    assert CommonSettings.from_env(one).server_processes == 1
    with pytest.raises(ConfigError, match="RECIPEIMAGE_SERVER_PROCESSES"):
        CommonSettings.from_env({"RECIPEIMAGE_SERVER_PROCESSES": "0"})


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:50051", "127.0.0.1", 50051),
        ("[::1]:0", "::1", 0),
        (":7000", "0.0.0.0", 7000),
    ],
)
def test_addresses_split_and_join(address: str, host: str, port: int) -> None:
    assert split_address(address) == (host, port)
    assert split_address(join_address(host, port)) == (host, port)


def test_an_address_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        split_address("localhost")


def test_the_reserved_port_is_real_and_only_reuseport_sockets_share_it() -> None:
    reservation, address = reserve_port("127.0.0.1:0")
    with reservation:
        port = split_address(address)[1]
        assert port > 0
        # A server that does not ask for SO_REUSEPORT cannot take it.
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
        # A worker (SO_REUSEPORT) can, and listen on it.
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
