"""An isolated ingest namespace for the integration tests, and reads of what the flow wrote.

Shared by the ingest test modules (imported relatively; pytest runs in importlib mode).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.kafka_io import consumer
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics


async def isolated_ingest(
    settings: Settings, topic_prefix: str, mongo_db: AsyncDatabase, **overrides: Any
) -> Settings:
    """Settings with their own topics (created) and MongoDB database, metrics on a free port."""
    isolated = settings.model_copy(
        update={
            "topic_prefix": topic_prefix,
            "mongo_database": mongo_db.name,
            "metrics_port": 0,
            **overrides,
        }
    )
    topics = catalog(isolated)
    await ensure_topics(
        isolated,
        [
            topics.market_trades,
            topics.market_book_ticker,
            topics.market_quotes,
            topics.dead_letters,
        ],
    )
    return isolated


def partitions_of(settings: Settings, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(catalog(settings).by_name(topic).partitions)]


async def read_all(settings: Settings, topic: str, timeout_s: float = 120) -> list[ConsumerRecord]:
    """Every committed record of a topic (read_committed), from the beginning to its end now."""
    async with consumer(settings) as reader:
        partitions = partitions_of(settings, topic)
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        async with asyncio.timeout(timeout_s):
            while [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
                for batch in (await reader.getmany(timeout_ms=500, max_records=10_000)).values():
                    records.extend(batch)
        return records


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Where aiokafka's (and Java's) default partitioner puts a key."""
    every = list(range(partitions))
    return DefaultPartitioner()(key, every, every)
