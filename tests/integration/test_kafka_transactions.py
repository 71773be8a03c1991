"""Exactly-once rests on Kafka transactions: prove the local broker honours them."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from brokerflow.kafka_io import consumer, producer
from brokerflow.settings import Settings


async def _create_topic(settings: Settings, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _read_all(settings: Settings, topic: str, **options: object) -> list[bytes]:
    """Every record a consumer with these options sees, up to the partition's end."""
    values: list[bytes] = []
    async with consumer(settings, **options) as reader:
        partition = TopicPartition(topic, 0)
        reader.assign([partition])
        await reader.seek_to_beginning(partition)
        end = (await reader.end_offsets([partition]))[partition]
        while await reader.position(partition) < end:
            batch = await reader.getmany(partition, timeout_ms=1000)
            values.extend(record.value for record in batch.get(partition, []))
    return values


async def test_read_committed_sees_committed_and_never_aborted(
    settings: Settings, unique: str
) -> None:
    topic = f"test-tx-{unique}"
    await _create_topic(settings, topic)

    async with producer(settings, transactional_id=f"test-tx-{unique}") as writer:
        async with writer.transaction():
            await writer.send_and_wait(topic, b"committed-1", key=b"PETR4")
            await writer.send_and_wait(topic, b"committed-2", key=b"PETR4")
        await writer.begin_transaction()
        await writer.send_and_wait(topic, b"aborted-1", key=b"PETR4")
        await writer.abort_transaction()
        async with writer.transaction():
            await writer.send_and_wait(topic, b"committed-3", key=b"PETR4")

    committed = await _read_all(settings, topic, isolation_level="read_committed")
    uncommitted = await _read_all(settings, topic, isolation_level="read_uncommitted")

    assert committed == [b"committed-1", b"committed-2", b"committed-3"]
    # The aborted record is physically in the log: only the isolation level hides it.
    assert b"aborted-1" in uncommitted


async def test_open_transaction_is_invisible_until_commit(settings: Settings, unique: str) -> None:
    topic = f"test-tx-open-{unique}"
    await _create_topic(settings, topic)

    async with producer(settings, transactional_id=f"test-tx-open-{unique}") as writer:
        await writer.begin_transaction()
        await writer.send_and_wait(topic, b"pending", key=b"VALE3")
        assert await _read_all(settings, topic, isolation_level="read_committed") == []
        await writer.commit_transaction()

    assert await asyncio.wait_for(
        _read_all(settings, topic, isolation_level="read_committed"), timeout=20
    ) == [b"pending"]
