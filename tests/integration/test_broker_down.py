"""A stopped broker makes clients fail fast with an error that says what to do."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokerflow.kafka_io import KafkaUnavailableError, producer, publish
from brokerflow.schemas.examples import EXAMPLES
from brokerflow.settings import Settings
from brokerflow.stack import Stack
from brokerflow.stack.kafka import KafkaService


def _free_port_pair() -> int:
    """A port whose successor is free too (the broker's listener and its controller)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports on loopback")


@pytest.fixture
def throwaway_broker(stack: Stack, tmp_path: Path) -> Iterator[KafkaService]:
    """A second broker of our own, so stopping it leaves the shared stack alone."""
    port = _free_port_pair()
    broker = KafkaService(
        tmp_path,
        stack.settings.kafka_version,
        f"127.0.0.1:{port}",
        cache_dir=stack.kafka.libs.parent.parent,
    )
    broker.start()
    try:
        broker.wait_ready(timeout_s=90)
        yield broker
    finally:
        broker.stop()


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
