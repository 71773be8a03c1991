"""Redis answers the asyncio client with the structures the market cache will use."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from brokerflow.settings import Settings


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_last_price_hash_and_bounded_series(redis: Redis, unique: str) -> None:
    last = f"test:{unique}:last-price"
    series = f"test:{unique}:bars:PETR4:1m"
    try:
        await redis.hset(last, mapping={"PETR4": "37.85", "VALE3": "61.02"})
        for minute in range(5):
            await redis.lpush(series, f"bar-{minute}")
            await redis.ltrim(series, 0, 2)  # keep the three most recent

        assert await redis.hget(last, "PETR4") == "37.85"
        assert await redis.lrange(series, 0, -1) == ["bar-4", "bar-3", "bar-2"]
    finally:
        await redis.delete(last, series)


async def test_pubsub_delivers_to_a_subscriber(redis: Redis, unique: str) -> None:
    channel = f"test:{unique}:user:42"
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    try:
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        assert await redis.publish(channel, "ORDER_UPDATE o-1 FILLED") == 1
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        assert message["data"] == "ORDER_UPDATE o-1 FILLED"
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()
