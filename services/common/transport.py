"""How the servers and the ImageService-to-BudgetService channel use the wire:
TLS (and mutual TLS), message size caps and keepalive.

Plaintext is the default (`make run`); a certificate and key turn TLS on, a
client CA on top of them requires every client to present a certificate that
CA signed. Every variable is in the README's settings table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import ConfigError, env_float, env_int, env_str

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and key; with client_ca_file, mutual TLS."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        key = _read("RECIPEIMAGE_TLS_KEY_FILE", self.key_file)
        chain = _read("RECIPEIMAGE_TLS_CERT_FILE", self.cert_file)
        if self.client_ca_file is None:
            return grpc.ssl_server_credentials([(key, chain)])
        return grpc.ssl_server_credentials(
            [(key, chain)],
            root_certificates=_read("RECIPEIMAGE_TLS_CLIENT_CA_FILE", self.client_ca_file),
            require_client_auth=True,
        )


@dataclass(frozen=True)
class ChannelTls:
    """What a client trusts (ca_file) and, for mutual TLS, what it presents."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    # The name the server's certificate must carry, when the target names no
    # single host (ipv4:10.0.0.1:50051,10.0.0.2:50051); empty: the target's host.
    server_name: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        ca = _read("RECIPEIMAGE_BUDGET_TLS_CA_FILE", self.ca_file)
        if self.cert_file is None or self.key_file is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=_read("RECIPEIMAGE_BUDGET_TLS_KEY_FILE", self.key_file),
            certificate_chain=_read("RECIPEIMAGE_BUDGET_TLS_CERT_FILE", self.cert_file),
        )


@dataclass(frozen=True)
class WireLimits:
    """Message size caps and keepalive, the same on both servers and the channel."""

    max_receive_message_bytes: int = 32 * MIB
    max_send_message_bytes: int = 32 * MIB
    # Ping an idle connection this often; close it when a ping goes unanswered
    # for keepalive_timeout: a dead peer behind a load balancer is noticed.
    keepalive_time_seconds: float = 60.0
    keepalive_timeout_seconds: float = 20.0
    # Clients pinging more often than this are told to go away (too_many_pings);
    # keep it at or below every client's keepalive time.
    min_client_ping_interval_seconds: float = 30.0

    def server_options(self) -> list[tuple[str, int]]:
        return [
            *self._sizes(),
            *self._keepalive(),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                _ms(self.min_client_ping_interval_seconds),
            ),
            # Tolerate that many pings without data before the GOAWAY above.
            ("grpc.http2.max_ping_strikes", 2),
        ]

    def channel_options(self) -> list[tuple[str, int]]:
        return [*self._sizes(), *self._keepalive()]

    def _sizes(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
        ]

    def _keepalive(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time_seconds)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout_seconds)),
            # gRPC 1.85 drops a connection over an unanswered ping only after this
            # (default 60 s), whatever the keepalive timeout says: keep them one.
            ("grpc.http2.ping_timeout_ms", _ms(self.keepalive_timeout_seconds)),
            # An idle connection is pinged too: the channel to BudgetService is
            # idle between calls, and a server must not punish such pings.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]


def server_tls_from_env(env: Mapping[str, str]) -> ServerTls | None:
    """TLS for a server: none unless RECIPEIMAGE_TLS_CERT_FILE is set."""
    cert = env_str(env, "RECIPEIMAGE_TLS_CERT_FILE", "")
    key = env_str(env, "RECIPEIMAGE_TLS_KEY_FILE", "")
    client_ca = env_str(env, "RECIPEIMAGE_TLS_CLIENT_CA_FILE", "")
    if bool(cert) != bool(key):
        raise ConfigError("RECIPEIMAGE_TLS_CERT_FILE and RECIPEIMAGE_TLS_KEY_FILE go together")
    if client_ca and not cert:
        raise ConfigError("RECIPEIMAGE_TLS_CLIENT_CA_FILE needs RECIPEIMAGE_TLS_CERT_FILE")
    if not cert:
        return None
    return ServerTls(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def budget_channel_tls_from_env(env: Mapping[str, str]) -> ChannelTls | None:
    """TLS for ImageService's channel to BudgetService: none unless
    RECIPEIMAGE_BUDGET_TLS_CA_FILE is set."""
    ca = env_str(env, "RECIPEIMAGE_BUDGET_TLS_CA_FILE", "")
    cert = env_str(env, "RECIPEIMAGE_BUDGET_TLS_CERT_FILE", "")
    key = env_str(env, "RECIPEIMAGE_BUDGET_TLS_KEY_FILE", "")
    server_name = env_str(env, "RECIPEIMAGE_BUDGET_TLS_SERVER_NAME", "")
    if bool(cert) != bool(key):
        raise ConfigError(
            "RECIPEIMAGE_BUDGET_TLS_CERT_FILE and RECIPEIMAGE_BUDGET_TLS_KEY_FILE go together"
        )
    if cert and not ca:
        raise ConfigError("RECIPEIMAGE_BUDGET_TLS_CERT_FILE needs RECIPEIMAGE_BUDGET_TLS_CA_FILE")
    if server_name and not ca:
        raise ConfigError("RECIPEIMAGE_BUDGET_TLS_SERVER_NAME needs RECIPEIMAGE_BUDGET_TLS_CA_FILE")
    if not ca:
        return None
    return ChannelTls(
        Path(ca), Path(cert) if cert else None, Path(key) if key else None, server_name
    )


def wire_limits_from_env(env: Mapping[str, str]) -> WireLimits:
    limits = _read_wire_limits(env)
    if limits.keepalive_time_seconds < limits.min_client_ping_interval_seconds:
        # The servers would answer this process's own pings with too_many_pings.
        raise ConfigError(
            "RECIPEIMAGE_GRPC_KEEPALIVE_TIME_SECONDS must be at least "
            "RECIPEIMAGE_GRPC_MIN_CLIENT_PING_INTERVAL_SECONDS"
        )
    return limits


def _read_wire_limits(env: Mapping[str, str]) -> WireLimits:
    defaults = WireLimits()
    return WireLimits(
        max_receive_message_bytes=env_int(
            env,
            "RECIPEIMAGE_GRPC_MAX_RECEIVE_MESSAGE_BYTES",
            defaults.max_receive_message_bytes,
            minimum=1024,
        ),
        max_send_message_bytes=env_int(
            env,
            "RECIPEIMAGE_GRPC_MAX_SEND_MESSAGE_BYTES",
            defaults.max_send_message_bytes,
            minimum=1024,
        ),
        keepalive_time_seconds=env_float(
            env,
            "RECIPEIMAGE_GRPC_KEEPALIVE_TIME_SECONDS",
            defaults.keepalive_time_seconds,
            minimum=1.0,
        ),
        keepalive_timeout_seconds=env_float(
            env,
            "RECIPEIMAGE_GRPC_KEEPALIVE_TIMEOUT_SECONDS",
            defaults.keepalive_timeout_seconds,
            minimum=1.0,
        ),
        min_client_ping_interval_seconds=env_float(
            env,
            "RECIPEIMAGE_GRPC_MIN_CLIENT_PING_INTERVAL_SECONDS",
            defaults.min_client_ping_interval_seconds,
            minimum=1.0,
        ),
    )


# Spread calls over every address the target resolves to (a list such as
# ipv4:10.0.0.1:50051,10.0.0.2:50051, or a DNS name with several records),
# rather than gRPC's default of sending everything to the first one.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(limits: WireLimits) -> list[tuple[str, int | str]]:
    """The options of every channel to a replicated service: the wire limits,
    round_robin over the target's addresses."""
    return [*limits.channel_options(), ("grpc.service_config", ROUND_ROBIN)]


def open_channel(target: str, tls: ChannelTls | None, limits: WireLimits) -> grpc.Channel:
    """A channel to target: TLS when tls is given, else plaintext; its calls
    spread round-robin over every address target resolves to."""
    options = channel_options(limits)
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, tls.credentials(), options=options)


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc}") from exc


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
