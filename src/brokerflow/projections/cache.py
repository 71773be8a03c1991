"""The hot read cache: each account's portfolio inputs in one Redis hash, newest version wins.

``GET /api/v1/portfolio`` and ``GET /api/v1/account`` read an account's ``accounts`` document and
its ``positions`` from Redis instead of MongoDB. One hash per account,
``{API_REDIS_PREFIX}portfolio:{accountId}``::

    account        "<sequence>|<the accounts document as JSON>"
    pos:<SYMBOL>   "<sequence>|<the position document as JSON>"
    complete       "1" once a reader merged the whole of MongoDB's view into it

Both writers go through one Lua script that keeps, per field, the version with the highest
ledger ``sequence``: the projector writes through every document of every account a batch
touched (after MongoDB has it, before it commits its offsets), and an API read that finds no
``complete`` hash (cold, expired, or only written through so far) reads MongoDB and merges that
in. Whatever the interleaving, each field ends at the newest version either writer saw, so a
read of an old MongoDB state can never overwrite a newer write-through. A projector that dies
between MongoDB and Redis re-reads the batch on restart, finds the documents applied already,
and writes them through again: the cache never stays behind MongoDB. Hashes expire after
``ttl_s`` without a write, so an idle account costs no memory.

The account's open orders (``GET /api/v1/orders?status=OPEN``, the other hot read) live in a
second hash, ``{API_REDIS_PREFIX}open-orders:{accountId}``, one field per order, through the same
script, versioned by :func:`order_version`; written by the API when it places an order, by the
projector for every order a batch moved, and by a cold read from MongoDB (which marks it
complete). An order that ends stays as a tombstone at its final version, so an older view of it
can never bring it back; readers keep the open ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from brokerflow.projections.folds import Document

__all__ = [
    "OPEN_STATUSES",
    "CachedPortfolio",
    "OpenOrdersCache",
    "PortfolioCache",
    "decode_portfolio",
    "encode_entry",
    "order_version",
]

#: KEYS[1] the hash; ARGV: ttl seconds, "1" to mark complete, then (field, sequence, value)...
_MERGE = """
for i = 3, #ARGV, 3 do
  local field, sequence = ARGV[i], tonumber(ARGV[i + 1])
  local current = redis.call('HGET', KEYS[1], field)
  local keep = false
  if current then
    local bar = string.find(current, '|', 1, true)
    keep = bar and tonumber(string.sub(current, 1, bar - 1)) >= sequence
  end
  if not keep then
    redis.call('HSET', KEYS[1], field, sequence .. '|' .. ARGV[i + 2])
  end
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'complete', '1')
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

_ACCOUNT = "account"
_POSITION = "pos:"
_COMPLETE = "complete"


def encode_entry(document: Mapping[str, Any]) -> tuple[int, str]:
    """A document's (sequence, JSON); documents without a sequence count as -1."""
    return int(document.get("sequence", -1)), json.dumps(document, default=str, sort_keys=True)


@dataclass(frozen=True, slots=True)
class CachedPortfolio:
    account: Document | None
    positions: list[Document]


def _documents(raw: Mapping[bytes, bytes]) -> dict[str, Document] | None:
    """A hash's fields as documents (its versions dropped); None unless it is complete."""
    fields = {key.decode(): value.decode() for key, value in raw.items()}
    if fields.pop(_COMPLETE, None) != "1":
        return None
    return {field: dict(json.loads(value.split("|", 1)[1])) for field, value in fields.items()}


def decode_portfolio(raw: Mapping[bytes, bytes]) -> CachedPortfolio | None:
    """The hash as documents; None unless it is complete (a reader must go to MongoDB)."""
    documents = _documents(raw)
    if documents is None:
        return None
    positions = [doc for field, doc in sorted(documents.items()) if field.startswith(_POSITION)]
    return CachedPortfolio(documents.get(_ACCOUNT), positions)


class _AccountHashes:
    """One hash per account, every write through :data:`_MERGE` (newest version per field)."""

    #: The key's middle part: ``{prefix}{kind}:{accountId}``.
    kind = ""

    def __init__(self, redis: Redis, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._merge = redis.register_script(_MERGE)

    def key(self, account_id: str) -> str:
        return f"{self.prefix}{self.kind}:{account_id}"

    async def _write(self, entries: Mapping[str, list[Any]], *, complete: bool) -> None:
        """``account -> [field, version, value, ...]``, every account in one round trip."""
        flag = "1" if complete else "0"
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id, args in entries.items():
                await self._merge(
                    keys=[self.key(account_id)], args=[self.ttl_s, flag, *args], client=pipe
                )
            await pipe.execute()


class PortfolioCache(_AccountHashes):
    """Reads and sequence-guarded writes of the per-account portfolio hashes."""

    kind = "portfolio"

    @staticmethod
    def _fields(account: Document | None, positions: Iterable[Document]) -> list[Any]:
        args: list[Any] = []
        if account is not None:
            args.extend((_ACCOUNT, *encode_entry(account)))
        for position in positions:
            args.extend((_POSITION + str(position["symbol"]), *encode_entry(position)))
        return args

    async def read(self, account_id: str) -> CachedPortfolio | None:
        return decode_portfolio(await self.redis.hgetall(self.key(account_id)))

    async def merge(
        self,
        account_id: str,
        account: Document | None,
        positions: Iterable[Document],
        *,
        complete: bool,
    ) -> None:
        """Keep each document unless the hash holds the same one at a higher sequence."""
        await self._write({account_id: self._fields(account, positions)}, complete=complete)

    async def write_through(
        self, accounts: Mapping[str, Document | None], positions: Iterable[Document]
    ) -> None:
        """The projector's write: every touched account and position, in one round trip."""
        by_account: dict[str, list[Document]] = {account_id: [] for account_id in accounts}
        for position in positions:
            by_account.setdefault(str(position["accountId"]), []).append(position)
        entries = {
            account_id: self._fields(accounts.get(account_id), owned)
            for account_id, owned in by_account.items()
        }
        await self._write(entries, complete=False)


#: What "open" means for the open-orders read: still able to trade (or waiting to).
OPEN_STATUSES = frozenset({"PENDING", "OPEN", "PARTIALLY_FILLED"})


def order_version(document: Mapping[str, Any]) -> int:
    """Orders move forward by their exchange sequence (``lastSequence``, -1 before the exchange
    saw them); at the same sequence an ended order (refused while PENDING) is the newer."""
    ended = str(document.get("status")) not in OPEN_STATUSES
    return (int(document.get("lastSequence", -1)) + 1) * 2 + int(ended)


class OpenOrdersCache(_AccountHashes):
    """Per-account open orders in Redis, newest version of each order wins."""

    kind = "open-orders"

    @staticmethod
    def _fields(documents: Iterable[Mapping[str, Any]]) -> list[Any]:
        args: list[Any] = []
        for document in documents:
            body = json.dumps(dict(document), default=str, sort_keys=True)
            args.extend((f"ord:{document['_id']}", order_version(document), body))
        return args

    async def read(self, account_id: str) -> list[Document] | None:
        """The open orders, or None when the hash is not complete (read MongoDB)."""
        documents = _documents(await self.redis.hgetall(self.key(account_id)))
        if documents is None:
            return None
        return [d for d in documents.values() if str(d.get("status")) in OPEN_STATUSES]

    async def merge(
        self, account_id: str, documents: Iterable[Mapping[str, Any]], *, complete: bool
    ) -> None:
        await self._write({account_id: self._fields(documents)}, complete=complete)

    async def write_through(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """The projector's write: every order a batch moved, grouped by account."""
        by_account: dict[str, list[Mapping[str, Any]]] = {}
        for document in documents:
            if document.get("accountId"):
                by_account.setdefault(str(document["accountId"]), []).append(document)
        await self._write(
            {account_id: self._fields(owned) for account_id, owned in by_account.items()},
            complete=False,
        )
