"""The stats flow's librdkafka producer puts a symbol on the partition aiokafka would choose.

librdkafka's default partitioner, ``consistent_random``, hashes keys with CRC32; the Java client
and aiokafka's ``DefaultPartitioner`` use murmur2. The flow sets ``partitioner=murmur2_random``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer

from brokerflow.flows.stats import producer_config
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

pytestmark = pytest.mark.integration

KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "DOGEUSDT", "PETR4", "VALE3", "ITUB4", "BBDC4"]


def delivered_partitions(config: dict[str, Any], topic: str) -> dict[str, int]:
    partitions: dict[str, int] = {}

    def on_delivery(error: Any, message: Any) -> None:
        assert error is None, error
        partitions[message.key().decode()] = message.partition()

    client = Producer(config)
    for key in KEYS:
        client.produce(topic, key=key.encode(), value=b"{}", on_delivery=on_delivery)
    assert client.flush(15) == 0
    return partitions


async def test_symbols_land_where_aiokafka_puts_them(settings: Settings, unique: str) -> None:
    prefixed = settings.model_copy(update={"topic_prefix": f"it-{unique}."})
    spec = catalog(prefixed).market_bars
    await ensure_topics(prefixed, [spec])
    base = {"bootstrap.servers": prefixed.kafka_bootstrap_servers}

    ours = delivered_partitions({**base, **producer_config(prefixed)}, spec.name)
    default = delivered_partitions(base, spec.name)

    every = list(range(spec.partitions))
    aiokafka = {key: DefaultPartitioner()(key.encode(), every, every) for key in KEYS}
    assert ours == aiokafka
    # The finding that motivated the setting: librdkafka's default sends some symbols elsewhere.
    assert default != aiokafka
