"""The edge of a service under test: the test's authenticator, page tokens
signed with a test key, and a shutdown grace."""

from __future__ import annotations

from services.common.auth import Authenticator
from services.common.paging import PageTokens
from services.common.settings import Access

TEST_END_USER_SALT = b"test end users"


def access(authenticator: Authenticator, grace_seconds: float = 30.0) -> Access:
    return Access(
        authenticator, PageTokens.from_secret("test page tokens"), grace_seconds, TEST_END_USER_SALT
    )
