"""The MongoDB wire server answers PyMongo's async API as the flows will use it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


async def test_async_insert_find_and_upsert(mongo_db: AsyncDatabase) -> None:
    bars = mongo_db["bars"]
    start = datetime(2026, 4, 23, 17, 7, tzinfo=UTC)
    key = {"symbol": "PETR4", "window": "1m", "windowStart": start}

    # Decimals are stored as strings, as on the wire: FerretDB 1.x has no Decimal128.
    await bars.update_one(key, {"$set": {"close": "37.85", "volume": 100}}, upsert=True)
    # A replayed window must overwrite, never add a second document.
    await bars.update_one(key, {"$set": {"close": "37.90", "volume": 150}}, upsert=True)

    documents = [doc async for doc in bars.find({"symbol": "PETR4"})]
    assert len(documents) == 1
    assert Decimal(documents[0]["close"]) == Decimal("37.90")
    assert documents[0]["volume"] == 150
    assert documents[0]["windowStart"] == start.replace(tzinfo=None)  # BSON dates are naive UTC


async def test_unique_index_rejects_a_duplicate(mongo_db: AsyncDatabase) -> None:
    keys = mongo_db["idempotency_keys"]
    await keys.create_index("key", unique=True)
    await keys.insert_one({"key": "k-1", "orderId": "o-1"})

    with pytest.raises(DuplicateKeyError):
        await keys.insert_one({"key": "k-1", "orderId": "o-2"})

    stored = [doc["orderId"] async for doc in keys.find({"key": "k-1"})]
    assert stored == ["o-1"]
