"""Idempotent order submission (seed 002, deep dive 6): a claim in Redis, a backstop in MongoDB.

A key belongs to one user. The first request with it claims it atomically (``SET NX``) with the
hash of its canonical body; what comes next with the same key::

    same body, first still in flight   -> 409 REQUEST_IN_PROGRESS (with the order id)
    same body, first answered          -> the first answer again, Idempotent-Replayed: true
    another body                       -> 422 IDEMPOTENCY_KEY_REUSED

Redis can lose a claim (a restart without persistence, a failover). The backstop: the order id
is derived from (user, key) by :func:`order_id_for`, and the order document's ``_id`` is that id,
so a second insert fails and the request answers with the order already placed. Nothing can
place two orders for one key.

The claim is first taken for a short lease (:data:`IN_FLIGHT_LEASE_S`), then kept for the full
``API_IDEMPOTENCY_TTL_S`` with the answer: an API process killed mid-request does not block the
key for a day; a retry after the lease resumes through the backstop.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from redis.asyncio import Redis

__all__ = [
    "IN_FLIGHT_LEASE_S",
    "Claim",
    "IdempotencyStore",
    "StoredAnswer",
    "body_hash",
    "canonical",
    "order_id_for",
]

#: How long an unanswered claim holds its key: longer than any request can take.
IN_FLIGHT_LEASE_S = 120

#: Fixed forever: changing it would give a retried key a different order id.
ORDER_ID_NAMESPACE = uuid.UUID("7c1c3f6e-0c0e-4a53-9b7e-3f2d8d1a6b21")


def order_id_for(user_id: str, idempotency_key: str) -> str:
    """The order id of a user's idempotency key: the same for every retry, in every process."""
    return str(uuid.uuid5(ORDER_ID_NAMESPACE, f"{user_id}\x1f{idempotency_key}"))


def canonical(value: Any) -> Any:
    """A JSON-ready form where equal requests are equal: decimals by value (``"100"`` and
    ``"100.00"`` are one quantity), enums by value, keys sorted when dumped."""
    if isinstance(value, Decimal):
        normal = value.normalize()
        return format(normal if normal != 0 else Decimal(0), "f")
    if isinstance(value, Enum):
        return canonical(value.value)
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


def body_hash(operation: str, body: Mapping[str, Any]) -> str:
    """SHA-256 of the operation and its canonical body: what "the same request" means."""
    text = json.dumps(
        {"operation": operation, "body": canonical(body)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Claim:
    """What claiming a key found."""

    outcome: Literal["claimed", "in_flight", "replay", "mismatch"]
    answer: StoredAnswer | None = None


class IdempotencyStore:
    """Claims and answers of idempotency keys in Redis, under ``{prefix}idem:{user}:{key}``."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self.ttl_s = ttl_s

    def key(self, user_id: str, idempotency_key: str) -> str:
        return f"{self._prefix}idem:{user_id}:{idempotency_key}"

    async def claim(self, user_id: str, idempotency_key: str, digest: str) -> Claim:
        key = self.key(user_id, idempotency_key)
        record = json.dumps({"state": "in_flight", "hash": digest})
        lease = min(IN_FLIGHT_LEASE_S, self.ttl_s)
        for _ in range(3):  # the key can expire between a failed SET NX and the GET
            if await self._redis.set(key, record, nx=True, ex=lease):
                return Claim("claimed")
            raw = await self._redis.get(key)
            if raw is None:
                continue
            found = _parse(raw)
            if found is None or found.get("hash") != digest:
                return Claim("mismatch")
            if found.get("state") != "done":
                return Claim("in_flight")
            return Claim("replay", _answer(found))
        return Claim("in_flight")

    async def complete(
        self, user_id: str, idempotency_key: str, digest: str, answer: StoredAnswer
    ) -> None:
        """Keep the answer for the key's lifetime (replayed to every later retry)."""
        record = {
            "state": "done",
            "hash": digest,
            "status": answer.status,
            "body": answer.body,
            "headers": answer.headers,
        }
        await self._redis.set(self.key(user_id, idempotency_key), json.dumps(record), ex=self.ttl_s)

    async def release(self, user_id: str, idempotency_key: str) -> None:
        """Give the key up after a failure that placed nothing known, so a retry can run."""
        await self._redis.delete(self.key(user_id, idempotency_key))


def _parse(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _answer(record: Mapping[str, Any]) -> StoredAnswer:
    return StoredAnswer(
        status=int(record.get("status", 200)),
        body=dict(record.get("body") or {}),
        headers={str(k): str(v) for k, v in (record.get("headers") or {}).items()},
    )
