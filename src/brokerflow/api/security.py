"""Passwords (Argon2) and access tokens (JWT, HS256), with no I/O but the secret's file.

Tokens carry ``sub`` (the user id), ``acct`` (the account id), ``iat`` and ``exp``; they are
decoded with an explicit algorithm list, so a token signed ``alg: none`` or with another
algorithm is refused whatever its header says. The signing secret is ``API_JWT_SECRET``, or a
random one made once and kept in ``STACK_DIR/api-jwt-secret`` (mode 0600) so tokens survive a
restart and several API processes on one machine agree.

Argon2 takes about 0.1 s of CPU and 64 MiB per hash by design: :class:`Passwords` runs it in a
thread (never on the event loop) and at most a few at a time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from brokerflow.errors import ConfigError
from brokerflow.settings import Settings

__all__ = [
    "ALGORITHM",
    "Passwords",
    "Principal",
    "TokenCodec",
    "TokenError",
    "load_jwt_secret",
]

ALGORITHM = "HS256"
#: RFC 7518 3.2: an HS256 key must be at least as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32
SECRET_FILE = "api-jwt-secret"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token says the caller is."""

    user_id: str
    account_id: str


class TokenError(Exception):
    """A token that cannot be trusted; ``reason`` is ``expired`` or ``invalid``."""

    def __init__(self, reason: Literal["expired", "invalid"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class TokenCodec:
    """Issues and checks access tokens with one secret."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"API_JWT_SECRET is {len(secret.encode())} bytes; HS256 needs at least "
                f"{MIN_SECRET_BYTES} (make one with `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`), or leave it empty for a generated one"
            )
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, principal: Principal, *, now: datetime | None = None) -> str:
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        claims = {
            "sub": principal.user_id,
            "acct": principal.account_id,
            "iat": issued,
            "exp": issued + timedelta(seconds=self.ttl_s),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The token's principal; :class:`TokenError` when it is expired, forged or malformed."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "acct", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired", "the access token has expired; get a new one") from None
        except jwt.PyJWTError as exc:
            raise TokenError("invalid", f"the access token is not valid ({exc})") from None
        user_id, account_id = claims.get("sub"), claims.get("acct")
        if not isinstance(user_id, str) or not isinstance(account_id, str):
            raise TokenError("invalid", "the access token's claims are malformed")
        if not user_id or not account_id:
            raise TokenError("invalid", "the access token's claims are empty")
        return Principal(user_id=user_id, account_id=account_id)


def load_jwt_secret(settings: Settings) -> str:
    """``API_JWT_SECRET``, or the secret in ``STACK_DIR/api-jwt-secret``, made on first use."""
    if settings.api_jwt_secret:
        return settings.api_jwt_secret
    path = Path(settings.stack_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting together, one writes and the other reads its secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if not secret:
            raise ConfigError(f"{path} is empty; delete it and a new secret is made") from None
        return secret
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


class Passwords:
    """Argon2id hashes, computed in threads, ``concurrency`` at a time."""

    def __init__(self, concurrency: int = 4) -> None:
        self._hasher = PasswordHash((Argon2Hasher(),))
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Check ``password``; with no hash (unknown user) spend the same time and say no, so
        the answer's delay does not tell which usernames exist."""
        if hashed is None:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(16))
            hashed = self._dummy
            password = "\x00" + password
        async with self._slots:
            return await asyncio.to_thread(self._verify, password, hashed)

    def _verify(self, password: str, hashed: str) -> bool:
        try:
            return self._hasher.verify(password, hashed)
        except Exception:  # a corrupt stored hash is a failed login, not a crash
            return False
