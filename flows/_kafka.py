"""librdkafka settings shared by every Bytewax flow: one place for partitioning and tuning."""

from __future__ import annotations

from brokerflow.settings import Settings

__all__ = ["READ_COMMITTED", "producer_config"]

#: Consumers see only committed records; librdkafka, like aiokafka, defaults to uncommitted.
READ_COMMITTED: dict[str, str] = {"isolation.level": "read_committed"}


def producer_config(settings: Settings, *, linger_ms: int | None = None) -> dict[str, str]:
    """Producer properties: murmur2 keys as aiokafka and the Java client, and the seed's tuning.

    librdkafka's default partitioner (``consistent_random``, CRC32) puts a symbol on another
    partition than aiokafka would, which breaks per-symbol ordering across clients. Idempotence
    (no duplicates from librdkafka's own retries) needs ``acks=all``; with ``KAFKA_ACKS`` 0 or 1
    it stays off, as librdkafka refuses the combination.
    """
    config = {
        "partitioner": "murmur2_random",
        "linger.ms": str(settings.kafka_linger_ms if linger_ms is None else linger_ms),
        "compression.type": settings.kafka_compression,
        "acks": settings.kafka_acks,
    }
    if settings.kafka_acks == "all":
        config["enable.idempotence"] = "true"
    return config
