"""The real local stack for integration tests: brought up once per session, reused if running.

No mocks: these tests talk to a real Kafka broker (KRaft), real Redis and a real MongoDB wire
server. Services this session started are stopped at its end; set BROKERFLOW_KEEP_STACK=1 to keep
them for the next run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.settings import Settings
from brokerflow.stack import Stack
from brokerflow.stack.kafka import KafkaService
from brokerflow.topics import delete_topics


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    stack = Stack(Settings())
    states = stack.up()
    yield stack
    if os.environ.get("BROKERFLOW_KEEP_STACK") != "1":
        for state in states:
            if state.state == "started":
                next(s for s in stack.services if s.name == state.name).stop()


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return stack.settings


@pytest.fixture
def unique() -> Iterator[str]:
    """A suffix that keeps one test's topics, groups and keys apart from every other run's.

    The test's topics on the local broker (every name holding the suffix: its catalog and Faust's
    changelogs) are deleted after it: a broker that keeps every run's topics runs out of file
    descriptors after some thousands of partitions (seen: "Too many open files" at 19,487).
    """
    value = uuid.uuid4().hex[:10]
    yield value
    delete_test_topics(value)


def delete_test_topics(marker: str) -> None:
    """Best effort: a test that stopped the broker, or never needed it, leaves nothing to do."""
    settings = Settings()
    if not Stack(settings).kafka.answers():
        return
    try:
        asyncio.run(delete_topics(settings, lambda name: marker in name))
    except Exception as exc:
        warnings.warn(f"could not delete the topics of test run {marker}: {exc}", stacklevel=1)


@pytest.fixture
async def mongo_db(settings: Settings, unique: str) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient = AsyncMongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    database = client[f"test_{unique}"]
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        await client.close()


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
    """A second broker of our own, so stopping or restarting it leaves the shared stack alone."""
    port = _free_port_pair()
    broker = KafkaService(
        tmp_path / "broker",
        stack.settings.kafka_version,
        f"127.0.0.1:{port}",
        cache_dir=stack.kafka.libs.parent.parent,
    )
    broker.start()
    try:
        broker.wait_ready(timeout_s=120)
        yield broker
    finally:
        broker.stop()
