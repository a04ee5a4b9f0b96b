"""TLS and mutual TLS on both servers and on ImageService's channel to
BudgetService, with certificates made at test time (trustme); health,
reflection and grpcurl keep working over TLS."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as image_pb

from services.budget.main import build_app
from services.budget.settings import BudgetSettings
from services.common.config import ConfigError
from services.common.transport import ChannelTls, ServerTls
from services.image.settings import ImageSettings
from tests.support.access import access
from tests.support.budget_server import RunningBudget, budget_settings, running_budget
from tests.support.image_server import running_pair
from tests.support.tls import Certificates, make_certificates

GRPCURL = Path(sys.executable).parent / "grpcurl"
BUDGET = "recipeimage.budget.v1.BudgetService"
SOUP = image_pb.Recipe(
    recipe_id="r-soup",
    title="Broccoli Soup with Coconut Milk",
    ingredients=["1 can of coconut milk", "2 heads of broccoli"],
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def sqlite_url(sqlite_databases, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    # TLS is below the database: one backend is enough.
    return str(sqlite_databases.create_copy(tmp_path))


@pytest.fixture
def tls_budget(sqlite_url: str, authenticator, certs: Certificates) -> Iterator[RunningBudget]:  # type: ignore[no-untyped-def]
    with running_budget(sqlite_url, authenticator, tls=certs.tls) as budget:
        yield budget


@pytest.fixture
def mtls_budget(sqlite_url: str, authenticator, certs: Certificates) -> Iterator[RunningBudget]:  # type: ignore[no-untyped-def]
    with running_budget(sqlite_url, authenticator, tls=certs.mutual) as budget:
        yield budget


def health_of(channel: grpc.Channel) -> int:
    return (
        health_pb2_grpc.HealthStub(channel)
        .Check(health_pb2.HealthCheckRequest(service=BUDGET), timeout=10)
        .status
    )


def refused_code(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        health_of(channel)
    return raised.value.code()


def test_tls_calls_work_and_health_answers(tls_budget: RunningBudget, tokens) -> None:  # type: ignore[no-untyped-def]
    assert health_of(tls_budget.channel) == health_pb2.HealthCheckResponse.SERVING
    limits = tls_budget.stub.GetLimits(budget_pb.GetLimitsRequest(), metadata=tokens.user("u1"))
    assert limits.windows


def test_a_plaintext_client_is_refused_by_a_tls_server(tls_budget: RunningBudget) -> None:
    with grpc.insecure_channel(tls_budget.target) as plaintext:
        assert refused_code(plaintext) == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_server_ca_is_refused(
    tls_budget: RunningBudget,
) -> None:
    wrong_trust = grpc.ssl_channel_credentials(root_certificates=trustme.CA().cert_pem.bytes())
    with grpc.secure_channel(tls_budget.target, wrong_trust) as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_admits_a_client_with_a_certificate_from_the_ca(
    mtls_budget: RunningBudget, tokens
) -> None:  # type: ignore[no-untyped-def]
    assert health_of(mtls_budget.channel) == health_pb2.HealthCheckResponse.SERVING
    limits = mtls_budget.stub.GetLimits(budget_pb.GetLimitsRequest(), metadata=tokens.user("u1"))
    assert limits.windows


@pytest.mark.parametrize("client", ["anonymous", "stranger"])
def test_mutual_tls_refuses_a_client_without_a_certificate_from_the_ca(
    mtls_budget: RunningBudget, certs: Certificates, client: str
) -> None:
    tls: ChannelTls = getattr(certs, client)
    with grpc.secure_channel(mtls_budget.target, tls.credentials()) as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_image_service_reaches_budget_service_over_mutual_tls(
    sqlite_url: str, authenticator, tokens, certs: Certificates
) -> None:  # type: ignore[no-untyped-def]
    with running_pair(sqlite_url, authenticator, tls=certs.mutual) as pair:
        reply = pair.image.GenerateImage(
            image_pb.GenerateImageRequest(recipe=SOUP), metadata=tokens.user("u1"), timeout=30
        )
        assert reply.image.image_id
        assert reply.cost_micros > 0
        limits = pair.budget.stub.GetLimits(
            budget_pb.GetLimitsRequest(), metadata=tokens.user("u1")
        )
        daily = next(w for w in limits.windows if w.kind == budget_pb.WINDOW_KIND_USER_DAILY)
        assert daily.spent_micros == reply.cost_micros
        # ImageService's own health and reflection, over the same mutual TLS.
        client = certs.mutual.client
        listed = grpcurl(
            "-cacert",
            str(client.ca_file),
            "-cert",
            str(client.cert_file),
            "-key",
            str(client.key_file),
            f"127.0.0.1:{pair.port}",
            "list",
        )
        assert listed.returncode == 0, listed.stderr
        assert "recipeimage.image.v1.ImageService" in listed.stdout
        assert "grpc.health.v1.Health" in listed.stdout


def test_image_service_without_a_client_certificate_cannot_reach_budget_service(
    sqlite_url: str, authenticator, tokens, certs: Certificates
) -> None:  # type: ignore[no-untyped-def]
    """Fail closed: BudgetService refuses the handshake, so nothing is generated."""
    with running_pair(
        sqlite_url,
        authenticator,
        tls=certs.mutual,
        budget_tls=certs.anonymous,
        budget_deadline_seconds=2.0,
    ) as pair:
        with pytest.raises(grpc.RpcError) as raised:
            pair.image.GenerateImage(
                image_pb.GenerateImageRequest(recipe=SOUP), metadata=tokens.user("u1"), timeout=30
            )
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "BudgetService cannot be reached" in (raised.value.details() or "")


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_grpcurl_lists_and_checks_health_with_cacert(
    tls_budget: RunningBudget, certs: Certificates
) -> None:
    listed = grpcurl("-cacert", str(certs.ca_file), tls_budget.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert BUDGET in listed.stdout  # reflection works over TLS
    health = grpcurl(
        "-cacert",
        str(certs.ca_file),
        "-d",
        f'{{"service":"{BUDGET}"}}',
        tls_budget.target,
        "grpc.health.v1.Health/Check",
    )
    assert health.returncode == 0, health.stderr
    assert '"status": "SERVING"' in health.stdout


def test_grpcurl_with_mutual_tls_needs_a_client_certificate(
    mtls_budget: RunningBudget, certs: Certificates, tokens
) -> None:  # type: ignore[no-untyped-def]
    cert, key = certs.mutual.client.cert_file, certs.mutual.client.key_file
    assert cert is not None and key is not None
    token = dict(tokens.user("u1"))["authorization"]
    limits = grpcurl(
        "-cacert",
        str(certs.ca_file),
        "-cert",
        str(cert),
        "-key",
        str(key),
        "-H",
        f"authorization: {token}",
        mtls_budget.target,
        f"{BUDGET}/GetLimits",
    )
    assert limits.returncode == 0, limits.stderr
    assert '"tier": "USER_TIER_FREE"' in limits.stdout
    refused = grpcurl("-cacert", str(certs.ca_file), mtls_budget.target, "list")
    assert refused.returncode != 0


# ---- settings ------------------------------------------------------------------------


def test_tls_is_off_unless_configured() -> None:
    assert BudgetSettings.from_env({}).tls is None
    image = ImageSettings.from_env({})
    assert image.tls is None
    assert image.budget_tls is None


def test_tls_settings_are_read_from_the_environment() -> None:
    env = {
        "RECIPEIMAGE_TLS_CERT_FILE": "/certs/server.pem",
        "RECIPEIMAGE_TLS_KEY_FILE": "/certs/server.key",
        "RECIPEIMAGE_TLS_CLIENT_CA_FILE": "/certs/ca.pem",
        "RECIPEIMAGE_BUDGET_TLS_CA_FILE": "/certs/ca.pem",
        "RECIPEIMAGE_BUDGET_TLS_CERT_FILE": "/certs/client.pem",
        "RECIPEIMAGE_BUDGET_TLS_KEY_FILE": "/certs/client.key",
    }
    server = ServerTls(Path("/certs/server.pem"), Path("/certs/server.key"), Path("/certs/ca.pem"))
    assert BudgetSettings.from_env(env).tls == server
    image = ImageSettings.from_env(env)
    assert image.tls == server
    assert image.budget_tls == ChannelTls(
        Path("/certs/ca.pem"), Path("/certs/client.pem"), Path("/certs/client.key")
    )


@pytest.mark.parametrize(
    "env",
    [
        {"RECIPEIMAGE_TLS_CERT_FILE": "/c.pem"},
        {"RECIPEIMAGE_TLS_KEY_FILE": "/c.key"},
        {"RECIPEIMAGE_TLS_CLIENT_CA_FILE": "/ca.pem"},
        {"RECIPEIMAGE_BUDGET_TLS_CERT_FILE": "/c.pem", "RECIPEIMAGE_BUDGET_TLS_KEY_FILE": "/c.k"},
        {"RECIPEIMAGE_BUDGET_TLS_CA_FILE": "/ca.pem", "RECIPEIMAGE_BUDGET_TLS_CERT_FILE": "/c"},
    ],
)
def test_incomplete_tls_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        ImageSettings.from_env(env)


def test_a_missing_certificate_file_stops_the_start_with_its_setting_named(
    sqlite_url: str, authenticator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    missing = ServerTls(tmp_path / "absent.pem", tmp_path / "absent.key")
    with pytest.raises(ConfigError, match="RECIPEIMAGE_TLS_KEY_FILE"):
        build_app(budget_settings(sqlite_url, tls=missing), access(authenticator))
