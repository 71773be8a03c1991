"""The ingest flow's sinks: Kafka (murmur2-keyed, counted) and MongoDB raw history (idempotent).

Both write synchronously: ``write_batch`` returns only once Kafka acknowledged every record and
MongoDB stored every document. Bytewax snapshots an epoch only after its output was written, so a
crash replays at most the unsnapshotted tail: at-least-once into Kafka, and exactly one document
per record in MongoDB (the replayed inserts hit the unique ``_id`` and are ignored).

When Kafka goes away mid-run the Kafka sink holds the batch and lets librdkafka's idempotent
producer retry it (in order, never twice) until the broker answers again, logging every few
seconds what it holds and where; only a record unacknowledged for
``INGEST_KAFKA_OUTAGE_TIMEOUT_S`` raises :class:`KafkaDeliveryError`, which names the bootstrap
servers and what to do.

Why librdkafka's ``partitioner=murmur2_random``: its default, ``consistent_random``, hashes keys
with CRC32, while the Java client and aiokafka use murmur2; with the default a symbol produced by
this flow would land on another partition than the same symbol produced by aiokafka (the
exchange, the tests), and per-symbol order across producers would be lost.
"""

from __future__ import annotations

import logging
import threading
import time
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


#: Seconds between "still waiting for Kafka" warnings while a batch is held.
_FLUSH_STEP_S = 5.0


def producer_config(settings: Settings) -> dict[str, str]:
    """The shared librdkafka producer properties (murmur2, seed tuning) plus the brokers, and
    how long a record may wait for Kafka (``message.timeout.ms``, 0 = for ever)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **shared_producer_config(settings),
        "message.timeout.ms": str(round(settings.ingest_kafka_outage_timeout_s * 1000)),
    }


class _WithoutConnectionFailures(logging.Filter):
    """Drops librdkafka's ``FAIL`` lines: while a broker is down it logs every connection
    attempt (several a second); the sink's own warnings say the same every few seconds."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and args and args[0] == "FAIL")


#: librdkafka's own log lines, routed through Python logging (delivered on poll and flush).
_LIBRDKAFKA_LOG = logging.getLogger(f"{__name__}.librdkafka")
_LIBRDKAFKA_LOG.addFilter(_WithoutConnectionFailures())


def _outage_hint(bootstrap: str) -> str:
    return (
        f"start Kafka at {bootstrap} (`brokerflow stack up`) or set KAFKA_BOOTSTRAP_SERVERS to a "
        "reachable broker"
    )


class _KafkaRecordPartition(StatelessSinkPartition[KafkaRecord]):
    def __init__(self, config: dict[str, str], observe_latency: bool) -> None:
        self._bootstrap = config["bootstrap.servers"]
        self._timeout_s = int(config.get("message.timeout.ms", "300000")) / 1000
        self._producer = Producer({**config, "error_cb": self._on_error, "logger": _LIBRDKAFKA_LOG})
        self._observe_latency = observe_latency
        self._delivered: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._first_error: KafkaError | None = None
        self._fatal: KafkaError | None = None
        self._latencies: list[tuple[str, float]] = []

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's client-level errors: an outage is retried, a fatal error stops us."""
        if error.fatal():
            self._fatal = self._fatal or error
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning(
                "Kafka at %s does not answer (%s); holding records and retrying until it does",
                self._bootstrap,
                error.str(),
            )

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
        self._wait_for_acks()
        failed = dict(self._failed)
        self._publish_metrics()
        if self._fatal is not None:
            raise KafkaDeliveryError(
                f"the Kafka producer for {self._bootstrap} failed: {self._fatal.str()}; run the "
                "flow again: with recovery on it resumes from its last snapshot"
            )
        if self._first_error is not None:
            error, self._first_error = self._first_error, None
            raise KafkaDeliveryError(
                f"Kafka at {self._bootstrap} did not acknowledge {sum(failed.values())} "
                f"record(s) ({failed}) within INGEST_KAFKA_OUTAGE_TIMEOUT_S="
                f"{self._timeout_s:g} s ({error.str()}); {_outage_hint(self._bootstrap)}, then "
                "run the flow again: with recovery on it resumes from its last snapshot and "
                "re-sends what was not acknowledged"
            )

    def _wait_for_acks(self) -> None:
        """Flush, saying every few seconds what is held while Kafka is away (never a silent
        hang); librdkafka ends the wait by failing the records after ``message.timeout.ms``."""
        started = time.monotonic()
        while (held := self._producer.flush(_FLUSH_STEP_S)) > 0:
            if self._fatal is not None:
                return
            limit = (
                f"giving up after INGEST_KAFKA_OUTAGE_TIMEOUT_S={self._timeout_s:g} s"
                if self._timeout_s
                else "for ever: INGEST_KAFKA_OUTAGE_TIMEOUT_S=0"
            )
            log.warning(
                "Kafka at %s has not acknowledged %d record(s) for %.0f s; the flow waits and "
                "retries (%s); %s",
                self._bootstrap,
                held,
                time.monotonic() - started,
                limit,
                _outage_hint(self._bootstrap),
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
        # write_batch leaves nothing queued; bounded so a dead broker cannot hang the shutdown.
        self._producer.flush(_FLUSH_STEP_S)
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
