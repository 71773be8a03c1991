"""The read models in MongoDB: batched reads and conditional writes that make a replay a no-op.

No transactions (FerretDB 1.x has none), so every write is a single-document update whose filter
states what the projector read, and re-applying an event finds nothing to do:

* orders: one update per document and batch, filtered on the ``lastSequence`` and ``status`` it
  was folded from; new fills are ``$push``-ed only if none of their ``executionId`` is there
  yet. Fees of a fill that was already there are set at its index (fills are only appended).
  Never upserted: the API creates broker orders; other participants' orders have no document.
* accounts and positions: upserted with the whole folded document, filtered on ``sequence`` below
  the new one. A document already further along makes the upsert fail with a duplicate key,
  which means "newer than this": state at a sequence is a pure fold of the entries up to it.

Written with the raw ``update`` command, at most :data:`MAX_UPDATES_PER_COMMAND` statements each
(FerretDB 1.24 on SQLite wedges at 100 upserts of existing documents in one command), rather than
``bulk_write``: FerretDB leaves ``nModified`` out of an answer whose upserts all failed with a
duplicate key, and PyMongo's bulk bookkeeping then dies with ``KeyError: 'nModified'``.

Two query forms FerretDB 1.24 gets wrong on arrays of documents, so neither is used:
``{"fills.executionId": {"$nin": [...]}}`` and ``{"$ne": ...}`` match even when an element has the
id; ``{"$nor": [{"fills.executionId": {"$in": [...]}}]}`` is right on both servers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.errors import BrokerflowError
from brokerflow.projections.folds import ACTIVITIES, ORDER_HISTORY, ORDERS, POSITIONS, Document

__all__ = [
    "INDEXES",
    "MAX_UPDATES_PER_COMMAND",
    "ProjectionWriteError",
    "ReadModelStore",
    "Update",
    "UpdateResult",
    "fee_stash_update",
    "fee_update",
    "order_updates",
    "sequenced_upsert",
]

log = logging.getLogger(__name__)

MAX_UPDATES_PER_COMMAND = 50
_DUPLICATE_KEY = 11000

#: collection -> (index name, keys). Orders by account, newest first (the order history query);
#: positions by account (the portfolio).
INDEXES: dict[str, tuple[str, list[tuple[str, int]]]] = {
    ORDERS: ("orders_by_account_created", [("accountId", ASCENDING), ("createdAt", DESCENDING)]),
    ORDER_HISTORY: ("order_events_by_order", [("orderId", ASCENDING), ("sequence", ASCENDING)]),
    POSITIONS: ("positions_by_account", [("accountId", ASCENDING)]),
    ACTIVITIES: ("activities_by_account", [("accountId", ASCENDING), ("sequence", DESCENDING)]),
}

#: One statement of an ``update`` command: ``{"q": filter, "u": update, "upsert": bool}``.
Update = dict[str, Any]


class ProjectionWriteError(BrokerflowError):
    """MongoDB refused a read-model write for a reason other than "already newer"."""


@dataclass
class UpdateResult:
    matched: int = 0
    modified: int = 0
    upserted: int = 0
    #: Upserts refused with a duplicate key: the document was already further along.
    superseded: int = 0
    #: Index (in the statements given) of each superseded upsert.
    superseded_at: list[int] = field(default_factory=list)


# --- what to write (pure) ----------------------------------------------------------------------


def order_updates(initial: Document, final: Document) -> tuple[Update | None, list[Update]]:
    """The statements that turn the order ``initial`` (as read) into ``final`` (as folded).

    Returns the guarded state update (fields and new fills; None when they did not change) and
    one update per earlier fill whose fees changed.
    """
    order_id = initial["_id"]
    before: list[Document] = initial.get("fills") or []
    after: list[Document] = final.get("fills") or []
    fields = {
        key: value
        for key, value in final.items()
        if key not in ("_id", "fills") and initial.get(key) != value
    }
    new_fills = after[len(before) :]
    state: Update | None = None
    if fields or new_fills:
        query: dict[str, Any] = {
            "_id": order_id,
            "lastSequence": initial.get("lastSequence"),
            "status": initial.get("status"),
        }
        change: dict[str, Any] = {}
        if fields:
            change["$set"] = fields
        if new_fills:
            ids = [fill["executionId"] for fill in new_fills]
            query["$nor"] = [{"fills.executionId": {"$in": ids}}]
            change["$push"] = {"fills": {"$each": new_fills}}
        state = {"q": query, "u": change, "upsert": False}
    fees: list[Update] = []
    for index, (old, new) in enumerate(zip(before, after, strict=False)):
        if old.get("fees") != new.get("fees"):
            fees.append(fee_update(order_id, index, new["executionId"], new.get("fees")))
    return state, fees


def fee_update(order_id: str, index: int, trade_id: str, fees: str | None) -> Update:
    """Set the fees of fill ``index``, if that fill is still the one with ``trade_id`` (fills
    are only ever appended, so it is)."""
    return {
        "q": {"_id": order_id, f"fills.{index}.executionId": trade_id},
        "u": {"$set": {f"fills.{index}.fees": fees}},
        "upsert": False,
    }


def sequenced_upsert(document: Document) -> Update:
    """Write ``document`` unless the stored one is at its ``sequence`` or beyond."""
    body = {key: value for key, value in document.items() if key != "_id"}
    return {
        "q": {"_id": document["_id"], "sequence": {"$lt": document["sequence"]}},
        "u": {"$set": body},
        "upsert": True,
    }


def fee_stash_update(key: str, order_id: str, trade_id: str, fees: str) -> Update:
    return {
        "q": {"_id": key},
        "u": {"$set": {"orderId": order_id, "executionId": trade_id, "fees": fees}},
        "upsert": True,
    }


# --- I/O ---------------------------------------------------------------------------------------


class ReadModelStore:
    """The projector's MongoDB database: ``orders``, ``accounts``, ``positions``, fill fees."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], prefix: str = "") -> None:
        self.db = db
        #: Put before every collection name: a rebuild writes a fresh set beside the live one.
        self.prefix = prefix

    def named(self, name: str) -> AsyncCollection[dict[str, Any]]:
        return self.db[self.prefix + name]

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes that are missing; return their names.

        Only when missing: on FerretDB 1.24 (SQLite) createIndexes for an index that already
        exists can deadlock the server."""
        created = []
        for collection, (name, keys) in INDEXES.items():
            existing = await self.named(collection).index_information()
            if name not in existing:
                await self.named(collection).create_index(keys, name=name)
                created.append(name)
        return created

    async def find(self, collection: str, ids: Iterable[str]) -> dict[str, Document]:
        wanted = sorted(set(ids))
        found: dict[str, Document] = {}
        for first in range(0, len(wanted), 1000):
            cursor = self.named(collection).find({"_id": {"$in": wanted[first : first + 1000]}})
            async for document in cursor:
                found[document["_id"]] = document
        return found

    async def insert_new(self, collection: str, documents: Sequence[Document]) -> int:
        """Insert what is not there yet (by ``_id``), unordered; return how many were new. A
        raw insert, not an upsert: FerretDB 1.24 drops empty arrays from ``$setOnInsert``."""
        inserted = 0
        for first in range(0, len(documents), MAX_UPDATES_PER_COMMAND):
            chunk = list(documents[first : first + MAX_UPDATES_PER_COMMAND])
            answer: Mapping[str, Any] = await self.db.command(
                {"insert": self.prefix + collection, "documents": chunk, "ordered": False}
            )
            inserted += int(answer.get("n", 0))
            for error in answer.get("writeErrors") or []:
                if error.get("code") != _DUPLICATE_KEY:
                    raise ProjectionWriteError(
                        f"MongoDB refused an insert into {collection} ({error.get('errmsg')})"
                    )
        return inserted

    async def update(self, collection: str, statements: Sequence[Update]) -> UpdateResult:
        """Run ``statements`` unordered, at most 50 per command; upserts that hit a newer
        document are counted as superseded, any other write error raises."""
        result = UpdateResult()
        for first in range(0, len(statements), MAX_UPDATES_PER_COMMAND):
            chunk = list(statements[first : first + MAX_UPDATES_PER_COMMAND])
            answer: Mapping[str, Any] = await self.db.command(
                {"update": self.prefix + collection, "updates": chunk, "ordered": False}
            )
            upserted = len(answer.get("upserted") or [])
            result.upserted += upserted
            result.matched += int(answer.get("n", 0)) - upserted
            result.modified += int(answer.get("nModified", 0))
            for error in answer.get("writeErrors") or []:
                index = int(error.get("index", -1))
                if error.get("code") == _DUPLICATE_KEY and chunk[index].get("upsert"):
                    result.superseded += 1
                    result.superseded_at.append(first + index)
                    continue
                raise ProjectionWriteError(
                    f"MongoDB refused an update of {collection} ({error.get('errmsg')}); "
                    f"statement: {chunk[index] if 0 <= index < len(chunk) else '?'}"
                )
        return result
