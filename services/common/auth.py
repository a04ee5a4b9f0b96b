"""Bearer tokens: Supabase-style HS256 JWTs turned into a Principal.

Claims: `sub` is the user id, `role` the role, `exp` the expiry. Besides our
own role names we accept Supabase's: `authenticated` is a user and
`service_role` an internal service.
"""

from __future__ import annotations

import enum
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt

from services.common.bounds import string_problem
from services.common.errors import InvalidArgument, PermissionDenied, Unauthenticated

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
# Verified tokens kept (until they expire) so a caller that reuses its token
# pays for the HMAC and the claims checks once, not on every call.
VERIFIED_CACHE_SIZE = 4096


class Role(enum.StrEnum):
    USER = "user"
    SERVICE = "service"
    ADMIN = "admin"


_ROLE_CLAIMS = {
    "user": Role.USER,
    "authenticated": Role.USER,
    "service": Role.SERVICE,
    "service_role": Role.SERVICE,
    "admin": Role.ADMIN,
}

ANY_ROLE = frozenset(Role)
TRUSTED = frozenset({Role.SERVICE, Role.ADMIN})
ADMIN_ONLY = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role

    def acting_for(self, requested_user_id: str, field: str = "user_id") -> str:
        """The user id this call acts for: a user only for itself, others for anyone named."""
        requested = requested_user_id.strip()
        if self.role is Role.USER:
            if requested and requested != self.subject:
                raise PermissionDenied("a user token may act only for its own user id")
            return self.subject
        if not requested:
            raise InvalidArgument.field(field, f"required for a {self.role} token")
        return requested


class Authenticator:
    def __init__(
        self,
        secret: str,
        *,
        audience: str | None = None,
        leeway_seconds: int = 30,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ):
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._audience = audience or None
        self._leeway = leeway_seconds
        self._verified = _VerifiedTokens(cache_size)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        token = _bearer_token(metadata or ())
        cached = self._verified.get(token, time.time())
        if cached is not None:
            return cached
        principal, expires_at = self._verify(token)
        # Kept only while jwt.decode would still accept it (exp plus leeway).
        self._verified.put(token, principal, expires_at + self._leeway)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        """The token's principal and its exp claim, or Unauthenticated."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        role = _ROLE_CLAIMS.get(str(claims.get("role", "")))
        if role is None:
            raise Unauthenticated("the token has no known role claim (user, service or admin)")
        raw_subject = str(claims["sub"])
        if string_problem(raw_subject, identifier=True) is not None:
            raise Unauthenticated("the token's sub claim is not a usable user id")
        subject = raw_subject.strip()
        if not subject:
            raise Unauthenticated("the token's sub claim is empty")
        return Principal(subject=subject, role=role), float(claims["exp"])

    def mint(self, role: Role, subject: str, ttl_seconds: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": subject, "role": role.value, "iat": now, "exp": now + ttl_seconds}
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)


class _VerifiedTokens:
    """Tokens already verified, each with its principal, until its expiry:
    bounded, least recently used first out; safe across server threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> Principal | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if now >= entry[1]:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry[0]

    def put(self, token: str, principal: Principal, until: float) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._entries[token] = (principal, until)
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def require_role(principal: Principal, allowed: frozenset[Role]) -> None:
    if principal.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise PermissionDenied(f"this call needs a token with role {names}")


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization must be 'Bearer <token>'")
            return token.strip()
    raise Unauthenticated("missing authorization metadata: send 'authorization: Bearer <token>'")


def load_or_create_secret(path: Path) -> str:
    """The local dev secret: created once with 0600 permissions, then reused."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not both write a secret.
    try:
        with open(path, "x", encoding="ascii") as handle:
            path.chmod(0o600)
            handle.write(secret + "\n")
    except FileExistsError:
        return path.read_text().strip()
    return secret
