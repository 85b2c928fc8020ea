"""Token checks: keys, algorithms, claims. Every refusal is an error reply, never a crash."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hubbub import config
from hubbub.core.auth import TokenVerifier, mint_token
from hubbub.errors import CommandError, ConfigError, ErrorCode
from tests.helpers import OTHER_SECRET, SECRET

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


def refused(verifier: TokenVerifier, token: str) -> int:
    with pytest.raises(CommandError) as caught:
        verifier.verify(token)
    return caught.value.code


def test_hs256_accepts_a_good_token_and_reads_its_claims() -> None:
    verifier = TokenVerifier(secret=SECRET)
    credentials = verifier.verify(mint_token(SECRET, "alice", ttl=60, info={"name": "Alice"}))
    assert credentials.user == "alice" and credentials.info == {"name": "Alice"}
    assert credentials.expires_at is not None and credentials.expires_at - time.time() <= 60


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (jwt.encode(claims(), OTHER_SECRET, algorithm="HS256"), ErrorCode.UNAUTHORIZED),  # forged
        (mint_token(SECRET, "alice", ttl=-1), ErrorCode.TOKEN_EXPIRED),
        (jwt.encode(claims(nbf=int(time.time()) + 300), SECRET, algorithm="HS256"), ErrorCode.UNAUTHORIZED),
        (jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), ErrorCode.UNAUTHORIZED),  # no sub
        (jwt.encode(claims(sub=""), SECRET, algorithm="HS256"), ErrorCode.UNAUTHORIZED),
        (jwt.encode(claims(sub="x" * 300), SECRET, algorithm="HS256"), ErrorCode.UNAUTHORIZED),
        (jwt.encode(claims(), None, algorithm="none"), ErrorCode.UNAUTHORIZED),  # type: ignore[arg-type]  # alg: none
        (jwt.encode(claims(), SECRET * 2, algorithm="HS512"), ErrorCode.UNAUTHORIZED),  # not accepted
        ("not.a.token", ErrorCode.UNAUTHORIZED),
        ("", ErrorCode.UNAUTHORIZED),
    ],
    ids=["forged", "expired", "not-yet-valid", "no-sub", "empty-sub", "long-sub", "alg-none", "hs512", "junk", "empty"],
)
def test_bad_tokens_are_refused(token: str, code: int) -> None:
    assert refused(TokenVerifier(secret=SECRET), token) == code


def test_tampered_payload_is_refused() -> None:
    header, payload, signature = mint_token(SECRET, "alice").split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["sub"] = "admin"
    new_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert refused(TokenVerifier(secret=SECRET), f"{header}.{new_payload}.{signature}") == ErrorCode.UNAUTHORIZED


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier(secret=SECRET, audience="chat", issuer="https://auth.example")
    good = mint_token(SECRET, "alice", audience="chat", issuer="https://auth.example")
    assert verifier.verify(good).user == "alice"
    assert refused(verifier, mint_token(SECRET, "alice", audience="billing", issuer="https://auth.example"))
    assert refused(verifier, mint_token(SECRET, "alice", audience="chat", issuer="https://evil.example"))
    assert refused(verifier, mint_token(SECRET, "alice")) == ErrorCode.UNAUTHORIZED  # aud required


@pytest.mark.parametrize(("private", "algorithm"), [(RSA_KEY, "RS256"), (EC_KEY, "ES256")])
def test_public_key_files_check_rs256_and_es256(tmp_path: Path, private: Any, algorithm: str) -> None:
    (tmp_path / "key.pem").write_bytes(public_pem(private))
    settings = config.load({"token_public_key": str(tmp_path / "key.pem")})
    verifier = TokenVerifier.from_settings(settings)
    assert verifier is not None
    assert verifier.verify(jwt.encode(claims(), private, algorithm=algorithm)).user == "alice"
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    assert refused(verifier, jwt.encode(claims(), other, algorithm=algorithm)) == ErrorCode.UNAUTHORIZED


def test_algorithm_confusion_is_refused(tmp_path: Path) -> None:
    """An HS256 token 'signed' with the public key's PEM must not pass as the RSA key."""
    pem = public_pem(RSA_KEY)
    (tmp_path / "key.pem").write_bytes(pem)
    verifier = TokenVerifier.from_settings(config.load({"token_public_key": str(tmp_path / "key.pem")}))
    assert verifier is not None
    import hashlib
    import hmac

    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(hmac.new(pem, header + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
    token = b".".join([header, body, signature]).decode()
    assert refused(verifier, token) == ErrorCode.UNAUTHORIZED
    # and an ES256 token where an RSA key is configured
    assert refused(verifier, jwt.encode(claims(), EC_KEY, algorithm="ES256")) == ErrorCode.UNAUTHORIZED


def test_jwks_keys_are_chosen_by_kid(tmp_path: Path) -> None:
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key()))
    jwks = {
        "keys": [
            {**rsa_jwk, "kid": "r1"},
            {**ec_jwk, "kid": "e1"},
            {"kty": "oct", "k": "c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M", "kid": "s"},
        ]
    }
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    verifier = TokenVerifier.from_settings(config.load({"token_jwks": str(tmp_path / "jwks.json")}))
    assert verifier is not None
    assert verifier.verify(jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "r1"})).user == "alice"
    assert verifier.verify(jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "e1"})).user == "alice"
    wrong_kid = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "e1"})
    assert refused(verifier, wrong_kid) == ErrorCode.UNAUTHORIZED
    # a symmetric key in a JWKS is ignored: HS256 with its value is not accepted
    assert refused(verifier, jwt.encode(claims(), "s" * 32, algorithm="HS256", headers={"kid": "s"}))


def test_bad_key_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="token_public_key"):
        TokenVerifier.from_settings(config.load({"token_public_key": str(tmp_path / "bad.pem")}))
    (tmp_path / "empty.json").write_text('{"keys": []}')
    with pytest.raises(ConfigError, match="token_jwks"):
        TokenVerifier.from_settings(config.load({"token_jwks": str(tmp_path / "empty.json")}))


def test_subscription_tokens_name_one_channel_and_user() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = mint_token(SECRET, "alice", channel="vip:room")
    assert verifier.verify_subscription(token, "alice", "vip:room") is not None
    with pytest.raises(CommandError) as other_channel:
        verifier.verify_subscription(token, "alice", "vip:other")
    with pytest.raises(CommandError) as other_user:
        verifier.verify_subscription(token, "bob", "vip:room")
    assert other_channel.value.code == other_user.value.code == ErrorCode.PERMISSION_DENIED
