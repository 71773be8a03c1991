"""Every message family survives a trip through a real broker byte for byte."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from brokerflow.kafka_io import consumer, producer, publish
from brokerflow.schemas import decode
from brokerflow.schemas.examples import EXAMPLES
from brokerflow.settings import Settings


async def test_every_example_round_trips_through_kafka(settings: Settings, unique: str) -> None:
    topic = f"test-schemas-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()

    async with producer(settings) as writer:
        sent = await publish(
            writer, topic, [(type(message).__name__, message) for message in EXAMPLES]
        )
    assert sent == len(EXAMPLES)

    received = []
    async with consumer(settings) as reader:
        partition = TopicPartition(topic, 0)
        reader.assign([partition])
        await reader.seek_to_beginning(partition)
        while len(received) < len(EXAMPLES):
            batch = await reader.getmany(partition, timeout_ms=2000)
            assert batch, f"only {len(received)} of {len(EXAMPLES)} records came back"
            received.extend(batch[partition])

    assert [record.key.decode() for record in received] == [
        type(message).__name__ for message in EXAMPLES
    ]
    assert [decode(record.value) for record in received] == list(EXAMPLES)
    assert [record.value for record in received] == [m.to_json_bytes() for m in EXAMPLES]
