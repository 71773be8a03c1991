"""A stopped broker makes clients fail fast with an error that says what to do."""

from __future__ import annotations

import asyncio

import pytest

from brokerflow.kafka_io import KafkaUnavailableError, producer, publish
from brokerflow.schemas.examples import EXAMPLES
from brokerflow.settings import Settings
from brokerflow.stack.kafka import KafkaService


async def test_clients_fail_fast_once_the_broker_is_gone(throwaway_broker: KafkaService) -> None:
    settings = Settings(kafka_bootstrap_servers=throwaway_broker.bootstrap)
    message = EXAMPLES[0]
    async with asyncio.timeout(60):  # a hang fails the test instead of stalling the suite
        async with producer(settings, timeout_s=5) as writer:
            assert await publish(writer, "__brokerflow_health", [("k", message)]) == 1

            assert throwaway_broker.stop()
            with pytest.raises(KafkaUnavailableError) as sending:
                await publish(writer, "__brokerflow_health", [("k", message)], timeout_s=5)

        with pytest.raises(KafkaUnavailableError) as starting:
            async with producer(settings, timeout_s=5):
                pass

    for error in (sending.value, starting.value):
        assert throwaway_broker.bootstrap in str(error)
        assert "brokerflow stack up" in str(error)
