import stat
import time

import jwt
import pytest

from services.common.auth import (
    ADMIN_ONLY,
    TRUSTED,
    Authenticator,
    Principal,
    Role,
    load_or_create_secret,
    require_role,
)
from services.common.errors import InvalidArgument, PermissionDenied, Unauthenticated

SECRET = "a-secret-of-at-least-thirty-two-bytes-for-tests"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(SECRET)


@pytest.mark.parametrize("role", list(Role))
def test_minted_token_authenticates_as_its_role(auth: Authenticator, role: Role) -> None:
    principal = auth.authenticate(bearer(auth.mint(role, "user-7")))
    assert principal == Principal(subject="user-7", role=role)


@pytest.mark.parametrize(
    ("claim", "role"),
    [("authenticated", Role.USER), ("service_role", Role.SERVICE), ("admin", Role.ADMIN)],
)
def test_supabase_role_claims_are_understood(auth: Authenticator, claim: str, role: Role) -> None:
    token = jwt.encode({"sub": "u1", "role": claim, "exp": int(time.time()) + 60}, SECRET, "HS256")
    assert auth.authenticate(bearer(token)).role is role


def test_missing_token_is_unauthenticated(auth: Authenticator) -> None:
    with pytest.raises(Unauthenticated, match="missing authorization"):
        auth.authenticate([("x-other", "1")])


def test_expired_token_is_unauthenticated(auth: Authenticator) -> None:
    token = jwt.encode(
        {"sub": "u1", "role": "user", "exp": int(time.time()) - 120}, SECRET, "HS256"
    )
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(bearer(token))


def test_forged_token_is_unauthenticated(auth: Authenticator) -> None:
    forged = Authenticator("another-secret-that-is-also-long-enough-123").mint(Role.ADMIN, "x")
    with pytest.raises(Unauthenticated, match="invalid token"):
        auth.authenticate(bearer(forged))


def test_unsigned_token_is_refused(auth: Authenticator) -> None:
    claims = {"sub": "u1", "role": "admin", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(token))


def test_unknown_role_is_unauthenticated(auth: Authenticator) -> None:
    token = jwt.encode({"sub": "u1", "role": "root", "exp": int(time.time()) + 60}, SECRET, "HS256")
    with pytest.raises(Unauthenticated, match="role"):
        auth.authenticate(bearer(token))


def test_non_bearer_scheme_is_unauthenticated(auth: Authenticator) -> None:
    with pytest.raises(Unauthenticated, match="Bearer"):
        auth.authenticate([("authorization", "Basic dXNlcjpwYXNz")])


def test_audience_is_checked_when_configured() -> None:
    strict = Authenticator(SECRET, audience="authenticated")
    assert strict.authenticate(bearer(strict.mint(Role.USER, "u1"))).subject == "u1"
    with pytest.raises(Unauthenticated):
        strict.authenticate(bearer(Authenticator(SECRET).mint(Role.USER, "u1")))


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        Authenticator("short")


def test_user_acts_only_for_itself() -> None:
    user = Principal("u1", Role.USER)
    assert user.acting_for("") == "u1"
    assert user.acting_for("u1") == "u1"
    with pytest.raises(PermissionDenied):
        user.acting_for("u2")


@pytest.mark.parametrize("role", [Role.SERVICE, Role.ADMIN])
def test_trusted_roles_act_for_the_named_user_and_must_name_one(role: Role) -> None:
    principal = Principal("backend", role)
    assert principal.acting_for("u2") == "u2"
    with pytest.raises(InvalidArgument) as caught:
        principal.acting_for("  ")
    assert caught.value.violations[0].field == "user_id"


def test_require_role() -> None:
    require_role(Principal("a", Role.ADMIN), ADMIN_ONLY)
    require_role(Principal("s", Role.SERVICE), TRUSTED)
    with pytest.raises(PermissionDenied):
        require_role(Principal("u", Role.USER), TRUSTED)


def test_local_secret_is_created_private_once_and_reused(tmp_path) -> None:
    path = tmp_path / "var" / "jwt-secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_a_verified_token_is_refused_once_it_expires_though_it_was_cached() -> None:
    auth = Authenticator(SECRET, leeway_seconds=0)
    token = auth.mint(Role.USER, "user-7", ttl_seconds=1)
    assert auth.authenticate(bearer(token)).subject == "user-7"
    assert auth.authenticate(bearer(token)).subject == "user-7"  # from the cache
    time.sleep(2.1 - (time.time() % 1))  # past exp, whatever the second's phase
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(token))


def test_a_cached_token_does_not_vouch_for_a_tampered_copy() -> None:
    auth = Authenticator(SECRET)
    token = auth.mint(Role.USER, "user-7")
    auth.authenticate(bearer(token))
    header, payload, signature = token.split(".")
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(f"{header}.{payload}.{signature[:-2]}AA"))


def test_the_cache_is_bounded_and_evicted_tokens_still_verify() -> None:
    auth = Authenticator(SECRET, cache_size=2)
    tokens = [auth.mint(Role.USER, f"user-{n}") for n in range(5)]
    for _ in range(2):
        assert [auth.authenticate(bearer(t)).subject for t in tokens] == [
            f"user-{n}" for n in range(5)
        ]
    assert len(auth._verified._entries) == 2
