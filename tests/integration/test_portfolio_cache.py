"""The portfolio cache on a real Redis: the newest version of each document wins, whoever writes
last, and a hash only the projector wrote to is not served (it may miss positions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from brokerflow.projections.cache import PortfolioCache
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
