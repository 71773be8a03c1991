"""``brokerflow projections rebuild`` on the real broker and MongoDB wire server: read models
damaged on purpose come back exactly as the event log says, the old ones are kept aside, and an
order only the API knows of survives the swap.

The session is test_projections' (hand-computed expected documents), plus the account commands
the API publishes before it: OpenAccount for a1 and a2, and a RequestOrder per order o1-o5.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from brokerflow.kafka_io import producer, publish
from brokerflow.projections.cache import PortfolioCache
from brokerflow.projections.folds import new_order_document
from brokerflow.projections.rebuild import rebuild_read_models
from brokerflow.schemas import OrderType, Side, TimeInForce
from brokerflow.schemas.accounts import OpenAccount, RequestOrder
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

from .test_projections import (
    PENDING_ORDERS,
    RECORDS,
    Running,
    at,
    expected,
    publish_session,
    snapshot,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.integration

CREATED = {"o1": 1, "o2": 10, "o3": 11, "o4": 12, "o5": 13}


def order_requests() -> list[RequestOrder]:
    return [
        RequestOrder(
            request_id=doc["_id"],
            order_id=doc["_id"],
            account_id=doc["accountId"],
            symbol=doc["symbol"],
            side=Side(doc["side"]),
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            quantity=Decimal(doc["quantity"]),
            price=Decimal(doc["price"]),
            event_time=at(CREATED[doc["_id"]]),
        )
        for doc in PENDING_ORDERS
    ]


@pytest.fixture
async def isolated(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> Settings:
    mine = settings.model_copy(
        update={
            "topic_prefix": f"rebuild-{unique}.",
            "mongo_database": mongo_db.name,
            "projections_group_id": f"rebuild-{unique}",
            "api_redis_prefix": f"test:{unique}:",
        }
    )
    topics = catalog(mine)
    await ensure_topics(
        mine,
        [
            topics.account_commands,
            topics.order_events,
            topics.ledger_events,
            topics.account_events,
            topics.dead_letters,
        ],
    )
    # What the API does for each order: the PENDING document, then the request.
    await mongo_db["orders"].insert_many([dict(doc) for doc in PENDING_ORDERS])
    opened = [
        OpenAccount(request_id=f"open-{a}", account_id=a, user_id=u, event_time=at(0))
        for a, u in (("a1", "u1"), ("a2", "u2"))
    ]
    async with producer(mine) as client:
        await publish(
            client,
            topics.account_commands.name,
            [(m.account_id, m) for m in [*opened, *order_requests()]],
        )
    return mine


def test_the_request_makes_the_document_the_api_writes() -> None:
    users = {"a1": "u1", "a2": "u2"}
    assert [new_order_document(r, users[r.account_id]) for r in order_requests()] == [
        dict(doc) for doc in PENDING_ORDERS
    ]


async def test_rebuild_repairs_damaged_read_models_and_keeps_the_old_ones(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    await publish_session(isolated)
    live = Running(isolated)
    try:
        assert await wait_for(mongo_db, expected()) == expected()
        await wait_until(lambda: live.stats.records == RECORDS, "every record read")
    finally:
        await live.finish()

    # Damage: a1's cash is wrong, its PETR4 position is gone, a cached portfolio says the same
    # wrong cash at the newest sequence; and o9 is an order the API wrote whose request never
    # reached Kafka (its publish failed).
    await mongo_db["accounts"].update_one({"_id": "a1"}, {"$set": {"balances.BRL.cash": "1.00"}})
    await mongo_db["positions"].delete_one({"_id": "a1|PETR4"})
    damaged_a1 = await mongo_db["accounts"].find_one({"_id": "a1"})
    o9: dict[str, Any] = {**PENDING_ORDERS[0], "_id": "o9", "orderId": "o9"}
    await mongo_db["orders"].insert_one(o9)
    redis = Redis.from_url(isolated.redis_url)
    cache = PortfolioCache(redis, isolated.api_redis_prefix, 60)
    try:
        await cache.merge("a1", damaged_a1, [], complete=True)

        report = await rebuild_read_models(isolated, progress=lambda line: None)

        assert await cache.read("a1") is None  # dropped: the next read fills it from MongoDB
    finally:
        await redis.aclose()

    wanted = expected()
    wanted["orders"]["o9"] = o9
    assert await snapshot(mongo_db) == wanted
    assert sorted(report.swapped) == [
        "accounts",
        "activities",
        "order_events",
        "orders",
        "positions",
        "projection_fill_fees",
    ]
    # Each order's history came back with it, one entry per state change, after its request.
    history = await mongo_db["order_events"].find({}).to_list()
    assert history
    assert {entry["orderId"] for entry in history} <= set(wanted["orders"])
    assert all(entry["_id"] == f"{entry['orderId']}:{entry['sequence']}" for entry in history)
    # And every account's ledger, gap-free from its opening up to the account's own sequence.
    for account in wanted["accounts"].values():
        ledger = await mongo_db["activities"].find({"accountId": account["_id"]}).to_list()
        assert sorted(e["sequence"] for e in ledger) == list(range(account["sequence"] + 1))
    assert await mongo_db[f"accounts_before_{report.stamp}"].find_one({"_id": "a1"}) == damaged_a1
    assert (report.orders_created, report.orders_copied) == (5, 1)
    assert (report.commands, report.events, report.caught_up_events) == (7, RECORDS, 0)
    names = await mongo_db.list_collection_names()
    assert not [name for name in names if name.startswith("rebuild_")]
    assert "orders_by_account_created" in await mongo_db["orders"].index_information()
