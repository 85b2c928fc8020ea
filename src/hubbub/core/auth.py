"""Tokens: connection JWTs (`sub` = user id) and subscription JWTs (`channel` claim).

Keys: an HS256 secret, an RSA or EC public key (RS256/ES256), or a JWKS file whose keys are
chosen by the token's `kid`. The algorithm a token may use follows from the key that checks
it, never from the token alone: `alg: none` and algorithm confusion (an HS256 token "signed"
with a public key) are refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hubbub.config import Settings
from hubbub.errors import CommandError, ConfigError, ErrorCode

MAX_USER_BYTES = 255


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who a connection is: user id ("" = anonymous), optional JSON info, expiry (unix time)."""

    user: str
    info: Any = None
    expires_at: float | None = None
    channels: tuple[str, ...] = ()  # subscribed for the client by the server (a token's `channels` claim)

    @property
    def anonymous(self) -> bool:
        return not self.user


ANONYMOUS = Credentials(user="")


def _algorithm_for(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise ConfigError(f"EC token keys must use P-256 for ES256, not {key.curve.name}")
        return "ES256"
    raise ConfigError("token keys must be RSA (RS256) or EC P-256 (ES256) public keys")


class TokenVerifier:
    """Checks signature, `exp`, `nbf`, and `aud`/`iss` when configured."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_keys: dict[str | None, tuple[str, Any]] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self._secret = secret
        self._public_keys = public_keys or {}  # kid (None = any) -> (algorithm, key)
        self._audience = audience
        self._issuer = issuer

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier | None:
        """None in development mode (no key configured)."""
        if settings.development_mode:
            return None
        public_keys: dict[str | None, tuple[str, Any]] = {}
        if settings.token_public_key:
            public_keys[None] = _load_pem(settings.token_public_key)
        if settings.token_jwks:
            public_keys.update(_load_jwks(settings.token_jwks))
        return cls(
            secret=settings.token_secret,
            public_keys=public_keys,
            audience=settings.token_audience,
            issuer=settings.token_issuer,
        )

    def _key_for(self, token: str) -> tuple[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise CommandError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        algorithm = header.get("alg")
        if algorithm == "HS256" and self._secret:
            return algorithm, self._secret
        if algorithm in ("RS256", "ES256"):
            found = self._public_keys.get(header.get("kid")) or self._public_keys.get(None)
            if found is not None and found[0] == algorithm:
                return found
        raise CommandError(ErrorCode.UNAUTHORIZED, f"invalid token: algorithm {algorithm!r} is not accepted")

    def _claims(self, token: str, required: list[str]) -> dict[str, Any]:
        algorithm, key = self._key_for(token)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": required, "verify_aud": self._audience is not None},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise CommandError(ErrorCode.TOKEN_EXPIRED, "token expired") from None
        except jwt.InvalidTokenError as exc:
            raise CommandError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None

    def verify(self, token: str) -> Credentials:
        claims = self._claims(token, ["sub"])
        if "channel" in claims:  # a subscription token grants one channel, never a connection
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token: a subscription token cannot connect")
        user = claims["sub"]
        if not isinstance(user, str) or not user or len(user.encode()) > MAX_USER_BYTES:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token: sub must be a user id of 1 to 255 bytes")
        exp = claims.get("exp")
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(channel, str) for channel in channels):
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token: channels must be a list of channel names")
        return Credentials(
            user=user,
            info=claims.get("info"),
            expires_at=float(exp) if exp is not None else None,
            channels=tuple(channels),
        )

    def verify_subscription(self, token: str, user: str, channel: str) -> float | None:
        """Check a subscription token for this user and channel; return its expiry."""
        claims = self._claims(token, ["channel"])
        if claims["channel"] != channel:
            raise CommandError(ErrorCode.PERMISSION_DENIED, "subscription token is for another channel")
        if claims.get("sub", "") != user:
            raise CommandError(ErrorCode.PERMISSION_DENIED, "subscription token is for another user")
        exp = claims.get("exp")
        return float(exp) if exp is not None else None


def _load_pem(path: str) -> tuple[str, Any]:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting 'token_public_key': cannot load {path!r}: {exc}") from None
    return _algorithm_for(key), key


def _load_jwks(path: str) -> dict[str | None, tuple[str, Any]]:
    try:
        document = json.loads(Path(path).read_text())
        keys = document["keys"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"setting 'token_jwks': cannot load {path!r}: {exc}") from None
    result: dict[str | None, tuple[str, Any]] = {}
    for entry in keys:
        kty = entry.get("kty")
        if kty == "RSA":
            key: Any = RSAAlgorithm.from_jwk(entry)
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(entry)
        else:
            continue  # symmetric keys never come from a JWKS file
        result[entry.get("kid")] = (_algorithm_for(key), key)
    if not result:
        raise ConfigError(f"setting 'token_jwks': {path!r} holds no RSA or EC keys")
    return result


def mint_token(
    secret: str,
    user: str,
    ttl: float | None = 3600,
    info: Any = None,
    *,
    channel: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 token for development and tests, signed with the server's secret."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now}
    if ttl is not None:
        claims["exp"] = int(now + ttl)
    if info is not None:
        claims["info"] = info
    if channel is not None:
        claims["channel"] = channel
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
