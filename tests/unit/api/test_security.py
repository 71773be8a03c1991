"""Access tokens (issue, verify, expiry, forgery), the secret's file, and password hashing."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from brokerflow.api.security import (
    Passwords,
    Principal,
    TokenCodec,
    TokenError,
    load_jwt_secret,
)
from brokerflow.errors import ConfigError
from brokerflow.settings import Settings

SECRET = "s" * 64
WHO = Principal(user_id="user-1", account_id="acct-1")


def test_a_token_carries_the_user_and_the_account() -> None:
    codec = TokenCodec(SECRET, ttl_s=3600)
    issued = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
    token = codec.issue(WHO, now=datetime.now(UTC))
    assert codec.verify(token) == WHO
    claims = jwt.decode(
        codec.issue(WHO, now=issued),
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert claims == {"sub": "user-1", "acct": "acct-1", "iat": 1767355200, "exp": 1767358800}


def test_an_expired_token_is_refused_as_expired() -> None:
    codec = TokenCodec(SECRET, ttl_s=60)
    token = codec.issue(WHO, now=datetime.now(UTC) - timedelta(seconds=61))
    with pytest.raises(TokenError) as caught:
        codec.verify(token)
    assert caught.value.reason == "expired"


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: TokenCodec("t" * 40, 60).issue(WHO),  # another secret
        lambda token: jwt.encode(
            jwt.decode(token, options={"verify_signature": False}), None, algorithm="none"
        ),
        lambda token: jwt.encode(
            jwt.decode(token, options={"verify_signature": False}), SECRET, algorithm="HS512"
        ),  # not in the allowed list
        lambda token: "not.a.jwt",
        lambda token: "",
    ],
    ids=["tampered", "other-secret", "alg-none", "hs512", "garbage", "empty"],
)
def test_a_forged_token_is_invalid(forge) -> None:  # type: ignore[no-untyped-def]
    codec = TokenCodec(SECRET, ttl_s=3600)
    with pytest.raises(TokenError) as caught:
        codec.verify(forge(codec.issue(WHO)))
    assert caught.value.reason == "invalid"


def test_a_token_without_the_account_claim_is_invalid() -> None:
    now = datetime.now(UTC)
    token = jwt.encode(
        {"sub": "user-1", "iat": now, "exp": now + timedelta(minutes=5)}, SECRET, algorithm="HS256"
    )
    with pytest.raises(TokenError):
        TokenCodec(SECRET, 60).verify(token)


def test_a_short_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        TokenCodec("short", 60)


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path / "stack", api_jwt_secret="")
    first = load_jwt_secret(settings)
    path = tmp_path / "stack" / "api-jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_jwt_secret(settings) == first


def test_a_configured_secret_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, api_jwt_secret=SECRET)
    assert load_jwt_secret(settings) == SECRET
    assert list(tmp_path.iterdir()) == []


async def test_passwords_hash_and_verify() -> None:
    passwords = Passwords()
    hashed = await passwords.hash("correct-horse-42")
    assert hashed.startswith("$argon2id$")
    assert "correct-horse-42" not in hashed
    assert await passwords.verify("correct-horse-42", hashed)
    assert not await passwords.verify("correct-horse-43", hashed)
    assert not await passwords.verify("correct-horse-42", None)  # unknown user
    assert not await passwords.verify("correct-horse-42", "not-a-hash")
