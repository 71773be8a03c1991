"""aiokafka producers and consumers configured from :class:`Settings`, failing fast and clearly.

aiokafka waits for a missing broker for as long as ``request_timeout_ms`` (40 s by default) and
then raises a bare ``KafkaConnectionError``; a demo or a worker that hangs that long looks dead.
These factories bound every start and send, and raise :class:`KafkaUnavailableError`, which names
the bootstrap servers and says what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from brokerflow.errors import StackError
from brokerflow.schemas.base import Message
from brokerflow.settings import Settings

__all__ = ["KafkaUnavailableError", "consumer", "producer", "publish"]

ClientT = TypeVar("ClientT", AIOKafkaProducer, AIOKafkaConsumer)


class KafkaUnavailableError(StackError):
    def __init__(self, bootstrap: str, cause: BaseException | str) -> None:
        super().__init__(
            f"Kafka at {bootstrap} is unavailable ({cause}); start the local stack with "
            "`brokerflow stack up`, or set KAFKA_BOOTSTRAP_SERVERS to a reachable broker"
        )


_UNAVAILABLE = (KafkaConnectionError, KafkaTimeoutError, TimeoutError, OSError)


def _acks(value: str) -> int | str:
    return "all" if value == "all" else int(value)


@asynccontextmanager
async def producer(
    settings: Settings,
    *,
    transactional_id: str | None = None,
    timeout_s: float = 10.0,
    **overrides: Any,
) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer with the seed's tuning (linger, compression, acks) from settings.

    A ``transactional_id`` turns on idempotence and ``acks=all``, as exactly-once requires.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "linger_ms": settings.kafka_linger_ms,
        "compression_type": None
        if settings.kafka_compression == "none"
        else settings.kafka_compression,
        "acks": _acks(settings.kafka_acks),
        "request_timeout_ms": int(timeout_s * 1000),
        "metadata_max_age_ms": 60_000,
    }
    if transactional_id is not None:
        options.update(transactional_id=transactional_id, enable_idempotence=True, acks="all")
    options.update(overrides)
    async with _started(AIOKafkaProducer(**options), settings, timeout_s) as client:
        yield client


@asynccontextmanager
async def consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None = None,
    timeout_s: float = 10.0,
    **overrides: Any,
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer that reads only committed records (aiokafka defaults to uncommitted)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "group_id": group_id,
        "isolation_level": "read_committed",
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "request_timeout_ms": int(timeout_s * 1000),
    }
    options.update(overrides)
    async with _started(AIOKafkaConsumer(*topics, **options), settings, timeout_s) as client:
        yield client


async def publish(
    client: AIOKafkaProducer,
    topic: str,
    messages: Iterable[tuple[str, Message]],
    *,
    timeout_s: float = 10.0,
) -> int:
    """Send keyed messages and wait for every ack; return how many were sent."""
    futures = [
        await client.send(topic, message.to_json_bytes(), key=key.encode())
        for key, message in messages
    ]
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*futures)
    except (KafkaError, TimeoutError) as exc:
        hosts = ",".join(f"{host}:{port}" for host, port, _ in client.client.hosts)
        raise KafkaUnavailableError(hosts, exc) from exc
    return len(futures)


@asynccontextmanager
async def _started(client: ClientT, settings: Settings, timeout_s: float) -> AsyncIterator[ClientT]:
    """Start within ``timeout_s`` or raise KafkaUnavailableError; always stop on the way out."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.start()
    except _UNAVAILABLE as exc:
        await _quietly_stop(client)
        raise KafkaUnavailableError(settings.kafka_bootstrap_servers, exc) from exc
    try:
        yield client
    finally:
        await _quietly_stop(client)


async def _quietly_stop(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    try:
        async with asyncio.timeout(5):
            await client.stop()
    except Exception:
        pass
