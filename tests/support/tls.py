"""Certificates made at test time (trustme), written to files as the services
read them.

    certs = make_certificates(tmp_path)
    with running_pair(url, authenticator, tls=certs.mutual) as pair: ...

`server_tls` and `client_tls` name the files a server and a client use; a
TlsPair holds both sides of one setup (plain TLS or mutual TLS). A stranger is
a client certificate signed by another CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import trustme

from services.common.transport import ChannelTls, ServerTls

HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsPair:
    """What the servers use and what their clients (ImageService's channel to
    BudgetService, the tests' own channels) use."""

    server: ServerTls
    client: ChannelTls

    def channel(self, target: str) -> grpc.Channel:
        return grpc.secure_channel(target, self.client.credentials())


@dataclass(frozen=True)
class Certificates:
    directory: Path
    ca_file: Path
    # Server TLS only: clients present nothing.
    tls: TlsPair
    # Mutual TLS: clients present a certificate the CA signed.
    mutual: TlsPair
    # A client certificate from another CA (trusting the right server CA).
    stranger: ChannelTls
    # The right CA only: no client certificate.
    anonymous: ChannelTls


def make_certificates(directory: Path) -> Certificates:
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert, server_key = _issue(ca, directory, "server", *HOSTS)
    client_cert, client_key = _issue(ca, directory, "client", "image-service")
    other = trustme.CA()
    stranger_cert, stranger_key = _issue(other, directory, "stranger", "image-service")
    anonymous = ChannelTls(ca_file)
    return Certificates(
        directory=directory,
        ca_file=ca_file,
        tls=TlsPair(ServerTls(server_cert, server_key), anonymous),
        mutual=TlsPair(
            ServerTls(server_cert, server_key, client_ca_file=ca_file),
            ChannelTls(ca_file, client_cert, client_key),
        ),
        stranger=ChannelTls(ca_file, stranger_cert, stranger_key),
        anonymous=anonymous,
    )


def _issue(ca: trustme.CA, directory: Path, name: str, *identities: str) -> tuple[Path, Path]:
    issued = ca.issue_cert(*identities)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    return cert, key
