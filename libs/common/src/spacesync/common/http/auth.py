"""Bearer-token check for admin APIs (SPACESYNC_ADMIN_TOKEN)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from spacesync.common.http.problems import Problem

_bearer = HTTPBearer(auto_error=False, description="Admin token (SPACESYNC_ADMIN_TOKEN)")


def require_admin(token: SecretStr) -> Callable[..., Awaitable[None]]:
    expected = token.get_secret_value().encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:  # noqa: B008
        if credentials is None:
            raise Problem(401, "Unauthorized", "This admin endpoint needs 'Authorization: Bearer <token>'.",
                          headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise Problem(401, "Unauthorized", "The bearer token is not valid.",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    return check
