"""The ingest flow's sinks: Kafka (murmur2-keyed, counted) and MongoDB raw history (idempotent).

Both write synchronously: ``write_batch`` returns only once Kafka acknowledged every record and
MongoDB stored every document. Bytewax snapshots an epoch only after its output was written, so a
crash replays at most the unsnapshotted tail: at-least-once into Kafka, and exactly one document
per record in MongoDB (the replayed inserts hit the unique ``_id`` and are ignored).

Why librdkafka's ``partitioner=murmur2_random``: its default, ``consistent_random``, hashes keys
with CRC32, while the Java client and aiokafka use murmur2; with the default a symbol produced by
this flow would land on another partition than the same symbol produced by aiokafka (the
exchange, the tests), and per-symbol order across producers would be lost.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from brokerflow.errors import StackError
from brokerflow.flows._kafka import producer_config as shared_producer_config
from brokerflow.metrics import (
    KAFKA_PUBLISH_FAILURE,
    KAFKA_PUBLISH_SUCCESS,
    VENDOR_TO_KAFKA_LATENCY,
)
from brokerflow.settings import Settings

__all__ = [
    "KafkaDeliveryError",
    "KafkaRecord",
    "KafkaRecordSink",
    "MongoHistorySink",
    "producer_config",
]

log = logging.getLogger(__name__)

#: MongoDB's duplicate-key error: the document is already there, which is what we wanted.
_DUPLICATE_KEY = 11000


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One record for Kafka, with what the metrics need to know about it."""

    topic: str
    key: bytes
    value: bytes
    vendor: str
    #: The vendor's event time, for ``vendor_to_kafka_latency_seconds``; ``None`` for dead
    #: letters (their time is ours, not the vendor's).
    event_time: datetime | None = None


class KafkaDeliveryError(StackError):
    """Kafka refused or timed out records; the flow stops so recovery can replay them."""


def producer_config(settings: Settings) -> dict[str, str]:
    """The shared librdkafka producer properties (murmur2, seed tuning) plus the brokers."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **shared_producer_config(settings),
    }


class _KafkaRecordPartition(StatelessSinkPartition[KafkaRecord]):
    def __init__(self, config: dict[str, str], observe_latency: bool) -> None:
        self._producer = Producer(config)
        self._observe_latency = observe_latency
        self._delivered: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._first_error: KafkaError | None = None
        self._latencies: list[tuple[str, float]] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        topic = message.topic() or "unknown"
        if error is None:
            self._delivered[topic] += 1
        else:
            self._failed[topic] += 1
            self._first_error = self._first_error or error

    def _latency_callback(self, vendor: str, event_time: datetime) -> Any:
        def on_delivery(error: KafkaError | None, message: Message) -> None:
            self._on_delivery(error, message)
            if error is None:
                seconds = (datetime.now(UTC) - event_time).total_seconds()
                self._latencies.append((vendor, seconds))

        return on_delivery

    def _produce(self, record: KafkaRecord) -> None:
        callback = (
            self._latency_callback(record.vendor, record.event_time)
            if self._observe_latency and record.event_time is not None
            else self._on_delivery
        )
        while True:
            try:
                self._producer.produce(
                    record.topic, value=record.value, key=record.key, on_delivery=callback
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)

    def write_batch(self, items: list[KafkaRecord]) -> None:
        for record in items:
            self._produce(record)
            self._producer.poll(0)
        self._producer.flush()
        self._publish_metrics()
        if self._first_error is not None:
            error, self._first_error = self._first_error, None
            raise KafkaDeliveryError(
                f"Kafka did not acknowledge {sum(self._failed.values())} record(s) "
                f"({dict(self._failed)}): {error.str()}; the flow stops so that recovery "
                "replays them"
            )

    def _publish_metrics(self) -> None:
        for topic, count in self._delivered.items():
            KAFKA_PUBLISH_SUCCESS.labels(topic=topic).inc(count)
        for topic, count in self._failed.items():
            KAFKA_PUBLISH_FAILURE.labels(topic=topic).inc(count)
        for vendor, seconds in self._latencies:
            VENDOR_TO_KAFKA_LATENCY.labels(vendor=vendor).observe(seconds)
        self._delivered.clear()
        self._failed.clear()
        self._latencies.clear()

    def close(self) -> None:
        self._producer.flush()
        self._publish_metrics()


class KafkaRecordSink(DynamicSink[KafkaRecord]):
    """Each record to its own topic, keyed, acknowledged before ``write_batch`` returns.

    One producer per worker. Counts ``kafka_publish_success_total`` / ``_failure_total`` per
    topic; with ``observe_latency`` (live sources: a replayed tape's event times are in the
    past) also ``vendor_to_kafka_latency_seconds``.
    """

    def __init__(self, settings: Settings, *, observe_latency: bool = False) -> None:
        self.config = producer_config(settings)
        self.observe_latency = observe_latency

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaRecordPartition:
        return _KafkaRecordPartition(self.config, self.observe_latency)


class _MongoHistoryPartition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, url: str, database: str, collection: str) -> None:
        from pymongo import MongoClient

        self._client: Any = MongoClient(url, serverSelectionTimeoutMS=10_000)
        self._collection = self._client[database][collection]

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        from pymongo.errors import BulkWriteError

        if not items:
            return
        try:
            # Plain inserts, not upserts: FerretDB runs an upsert about 80 times slower, and a
            # duplicate _id (a replayed record) is refused by the index, which is the point.
            self._collection.insert_many(items, ordered=False)
        except BulkWriteError as error:
            others = [
                entry
                for entry in error.details.get("writeErrors", [])
                if entry.get("code") != _DUPLICATE_KEY
            ]
            if others or error.details.get("writeConcernErrors"):
                raise

    def close(self) -> None:
        self._client.close()


class MongoHistorySink(DynamicSink[dict[str, Any]]):
    """Raw vendor history, one document per record, written once whatever is replayed."""

    _indexed = threading.Lock()

    def __init__(self, url: str, database: str, collection: str) -> None:
        self.url, self.database, self.collection = url, database, collection

    def ensure_indexes(self) -> None:
        """A query index by symbol and time; uniqueness is the ``_id`` itself."""
        from pymongo import ASCENDING, MongoClient

        client: Any = MongoClient(self.url, serverSelectionTimeoutMS=10_000)
        try:
            client[self.database][self.collection].create_index(
                [("symbol", ASCENDING), ("eventTime", ASCENDING)], name="by_symbol_time"
            )
        finally:
            client.close()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MongoHistoryPartition:
        if worker_index == 0:
            with self._indexed:
                self.ensure_indexes()
        return _MongoHistoryPartition(self.url, self.database, self.collection)
