"""The portfolio cache on a real Redis: the newest version of each document wins, whoever writes
last, and a hash only the projector wrote to is not served (it may miss positions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from brokerflow.projections.cache import OpenOrdersCache, PortfolioCache
from brokerflow.settings import Settings


@pytest.fixture
async def cache(settings: Settings, unique: str) -> AsyncIterator[PortfolioCache]:
    redis = Redis.from_url(settings.redis_url)
    portfolio = PortfolioCache(redis, f"test:{unique}:", ttl_s=30)
    yield portfolio
    await redis.delete(portfolio.key("acc-1"))
    await redis.aclose()


def account(sequence: int, cash: str) -> dict[str, object]:
    return {
        "_id": "acc-1",
        "accountId": "acc-1",
        "sequence": sequence,
        "balances": {"BRL": {"cash": cash, "held": "0", "unsettled": "0"}},
    }


def position(symbol: str, sequence: int, quantity: str) -> dict[str, object]:
    return {
        "_id": f"acc-1|{symbol}",
        "accountId": "acc-1",
        "symbol": symbol,
        "sequence": sequence,
        "quantity": quantity,
    }


async def test_a_write_through_alone_is_not_served(cache: PortfolioCache) -> None:
    await cache.write_through({"acc-1": account(4, "900.00")}, [position("PETR4", 4, "100")])
    assert await cache.read("acc-1") is None  # positions written before it may be missing


async def test_a_cold_read_of_an_older_state_never_overwrites_a_newer_write_through(
    cache: PortfolioCache,
) -> None:
    # The API read MongoDB at sequence 3; before it merged that in, the projector applied
    # entries 4 (a fill of PETR4) and 5 (a custody transfer of VALE3) and wrote them through.
    await cache.write_through(
        {"acc-1": account(5, "600.00")},
        [position("PETR4", 4, "200"), position("VALE3", 5, "50")],
    )
    await cache.merge("acc-1", account(3, "1000.00"), [position("PETR4", 2, "100")], complete=True)

    served = await cache.read("acc-1")
    assert served is not None
    assert served.account == account(5, "600.00")
    assert served.positions == [position("PETR4", 4, "200"), position("VALE3", 5, "50")]


async def test_a_newer_write_through_replaces_what_a_cold_read_filled(
    cache: PortfolioCache,
) -> None:
    await cache.merge("acc-1", account(3, "1000.00"), [position("PETR4", 2, "100")], complete=True)
    await cache.write_through({"acc-1": account(4, "-1.00")}, [position("PETR4", 4, "300")])
    # A replay after a crash writes the same versions again: nothing changes.
    await cache.write_through({"acc-1": account(4, "-1.00")}, [position("PETR4", 4, "300")])

    served = await cache.read("acc-1")
    assert served is not None
    assert served.account == account(4, "-1.00")
    assert served.positions == [position("PETR4", 4, "300")]


async def test_hashes_expire_without_writes(cache: PortfolioCache) -> None:
    await cache.merge("acc-1", account(0, "0"), [], complete=True)
    ttl = await cache.redis.ttl(cache.key("acc-1"))
    assert 0 < ttl <= 30


# --- open orders -------------------------------------------------------------------------------


def order(order_id: str, status: str, last_sequence: int) -> dict[str, object]:
    return {
        "_id": order_id,
        "accountId": "acc-1",
        "symbol": "PETR4",
        "status": status,
        "lastSequence": last_sequence,
        "createdAt": f"2026-06-25T10:00:0{last_sequence + 1}.000000Z",
    }


@pytest.fixture
async def open_orders(settings: Settings, unique: str) -> AsyncIterator[OpenOrdersCache]:
    redis = Redis.from_url(settings.redis_url)
    orders = OpenOrdersCache(redis, f"test:{unique}:", ttl_s=30)
    yield orders
    await redis.delete(orders.key("acc-1"))
    await redis.aclose()


async def test_an_ended_order_never_comes_back_from_an_older_cold_read(
    open_orders: OpenOrdersCache,
) -> None:
    # The projector saw o1 fill (sequence 4) and o2 open (3); a cold read that had read MongoDB
    # before (o1 OPEN at 2, o2 PENDING) merges after it: o1 stays filled, o2 stays open.
    await open_orders.write_through([order("o1", "FILLED", 4), order("o2", "OPEN", 3)])
    assert await open_orders.read("acc-1") is None  # not complete: MongoDB is read instead
    await open_orders.merge(
        "acc-1", [order("o1", "OPEN", 2), order("o2", "PENDING", -1)], complete=True
    )
    found = await open_orders.read("acc-1")
    assert found is not None
    assert [(o["_id"], o["status"]) for o in found] == [("o2", "OPEN")]


async def test_a_refusal_of_a_pending_order_outranks_the_pending_order(
    open_orders: OpenOrdersCache,
) -> None:
    await open_orders.merge("acc-1", [order("o3", "REJECTED", -1)], complete=True)
    await open_orders.merge("acc-1", [order("o3", "PENDING", -1)], complete=False)
    assert await open_orders.read("acc-1") == []
