"""Connection tokens: HS256 JWTs whose `sub` is the user id.

Later work adds RS256/ES256, JWKS and subscription tokens behind the same `verify` call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from hubbub.errors import CommandError, ErrorCode

ALGORITHMS = ["HS256"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who a connection is: user id ("" = anonymous), optional JSON info, expiry (unix time)."""

    user: str
    info: Any = None
    expires_at: float | None = None


ANONYMOUS = Credentials(user="")


class TokenVerifier:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def verify(self, token: str) -> Credentials:
        """Check signature and `exp`/`nbf`; refuse `alg: none` and any algorithm but HS256."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=ALGORITHMS, options={"require": ["sub"]}, leeway=0)
        except jwt.ExpiredSignatureError:
            raise CommandError(ErrorCode.TOKEN_EXPIRED, "token expired") from None
        except jwt.InvalidTokenError as exc:
            raise CommandError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        user = claims["sub"]
        if not isinstance(user, str) or not user or len(user) > 255:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token: sub must be a non-empty string")
        exp = claims.get("exp")
        return Credentials(user=user, info=claims.get("info"), expires_at=float(exp) if exp is not None else None)


def mint_token(secret: str, user: str, ttl: float | None = 3600, info: Any = None) -> str:
    """A token for development and tests, signed with the server's secret."""
    claims: dict[str, Any] = {"sub": user, "iat": int(time.time())}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    if info is not None:
        claims["info"] = info
    return jwt.encode(claims, secret, algorithm="HS256")
