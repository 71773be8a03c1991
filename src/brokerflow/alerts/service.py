"""The price-alerts service: market trades and alert commands in, ``PriceAlertTriggered`` out.

One consumer group (``ALERTS_GROUP_ID``) reads three topics keyed by symbol, with the same
partition count, so the group's range assignment gives one process a symbol's trades and its
alert commands (a co-partitioned stream transformation):

* ``market.trades.raw`` (venues' trades) and ``trade-executions-v1`` (our exchange's, the B3
  symbols): prices, compared with the active alerts of their symbol (:mod:`.core`);
* ``alert-commands-v1``: ``AlertCreated`` / ``AlertCancelled`` from the API.

MongoDB ``alerts`` is the durable record and the gate. The active alerts are loaded from it on
every partition assignment (start, restart, rebalance), so a restart loses none; a command adds an
alert only while its document is still ACTIVE, so a replayed command cannot revive a spent one.

Firing one alert, in this order::

    document still ACTIVE?  (no: cancelled or spent meanwhile -> forget it)
    -> PriceAlertTriggered to notifications-v1, keyed by userId, notificationId = alertId;
       wait for Kafka's ack
    -> conditional update ACTIVE -> TRIGGERED (triggeredPrice, triggeredAt)

The notification is sent before the alert is marked spent: a crash in between sends it again
after the restart (the delivery side drops the repeat by ``notificationId``) and never loses it.
The conditional update has one winner, whatever the number of instances or replays; a loser
counts ``alerts_triggered_total{outcome="lost_race"}``. Offsets are committed after a batch is
done; a failure (MongoDB or Kafka down) retries the batch with backoff. Bad records go to
``dead-letters-v1`` with the reason and are counted (``dead_letters_total{source="alerts"}``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from brokerflow.alerts.core import (
    ALERTS,
    Alert,
    AlertBook,
    AlertStatus,
    Print,
    alert_from_command,
    alert_from_document,
    notification_for,
    print_of,
)
from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.kafka_io import KafkaUnavailableError, consumer, producer, publish
from brokerflow.metrics import ALERTS_ACTIVE, ALERTS_TRIGGERED, DEAD_LETTERS
from brokerflow.schemas import decode
from brokerflow.schemas.alerts import AlertCancelled, AlertCreated
from brokerflow.schemas.base import Message, format_decimal, format_utc
from brokerflow.schemas.deadletter import DeadLetter
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

__all__ = ["AlertStats", "AlertStore", "AlertsService", "run_alerts"]

log = logging.getLogger(__name__)

SOURCE = "alerts"
_RETRY_MAX_S = 10.0


@dataclass
class AlertStats:
    """Counters since start (the log shows them; tests read them)."""

    records: int = 0
    prices: int = 0
    commands: int = 0
    #: Fired: notification sent and the alert marked TRIGGERED by this process.
    triggered: int = 0
    #: Notification sent, but the alert was marked by someone else first (a repeat).
    lost_races: int = 0
    #: Met by a price, but its document was no longer ACTIVE (cancelled, or spent elsewhere).
    stale: int = 0
    dead_letters: int = 0
    reloads: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class AlertStore:
    """The ``alerts`` collection, as the service uses it."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection

    async def active(self) -> list[Alert]:
        found = []
        async for document in self.collection.find({"status": AlertStatus.ACTIVE.value}):
            alert = alert_from_document(document)
            if alert is None:
                log.warning("alerts: unreadable alert document %s ignored", document.get("_id"))
                continue
            found.append(alert)
        return found

    async def still_active(self, alert_ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(alert_ids))
        if not wanted:
            return set()
        cursor = self.collection.find(
            {"_id": {"$in": wanted}, "status": AlertStatus.ACTIVE.value}, {"_id": 1}
        )
        return {str(document["_id"]) async for document in cursor}

    async def mark_triggered(self, alert: Alert, seen: Print) -> bool:
        """ACTIVE -> TRIGGERED; False when it was not ACTIVE any more (someone else won)."""
        result = await self.collection.update_one(
            {"_id": alert.alert_id, "status": AlertStatus.ACTIVE.value},
            {
                "$set": {
                    "status": AlertStatus.TRIGGERED.value,
                    "triggeredPrice": format_decimal(seen.price),
                    "triggeredAt": format_utc(seen.at),
                }
            },
        )
        return result.modified_count == 1


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: AlertsService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.service.reload_needed = True


class AlertsService:
    """Applies batches of records; :func:`run_alerts` drives it."""

    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        notifications: AIOKafkaProducer,
        stats: AlertStats | None = None,
    ) -> None:
        topics = catalog(settings)
        self.store = store
        self.notifications = notifications
        self.stats = stats if stats is not None else AlertStats()
        self.book = AlertBook()
        self.price_topics = (topics.market_trades.name, topics.trade_executions.name)
        self.commands_topic = topics.alert_commands.name
        self.input_topics = [*self.price_topics, self.commands_topic]
        self.notifications_topic = topics.notifications.name
        self.dead_letters_topic = topics.dead_letters.name
        self.reload_needed = True
        self.listener = _Assignments(self)

    async def reload(self) -> None:
        """Watch exactly the alerts MongoDB says are ACTIVE."""
        self.book = AlertBook(await self.store.active())
        self.reload_needed = False
        self.stats.reloads += 1
        ALERTS_ACTIVE.set(len(self.book))
        log.info("alerts: watching %d active alerts", len(self.book))

    async def apply(self, records: list[ConsumerRecord]) -> list[DeadLetter]:
        """Apply a batch: commands first (a trade before an alert's time never fires it, so
        this order is safe), then prices in order. Returns the dead letters to publish.

        Raises on a MongoDB or Kafka failure; the batch can then be applied again."""
        if self.reload_needed:
            await self.reload()
        commands: list[Message] = []
        prints: list[Print] = []
        letters: list[DeadLetter] = []
        for record in records:
            try:
                message = self._decode(record)
            except SchemaError as error:
                letters.append(self._dead_letter(record, error))
                continue
            if isinstance(message, AlertCreated | AlertCancelled):
                commands.append(message)
            else:
                seen = print_of(message)
                if seen is not None:
                    prints.append(seen)
        await self._apply_commands(commands)
        for seen in prints:
            for alert in self.book.met_by(seen):
                await self._fire(alert, seen)
        self.stats.records += len(records)
        self.stats.commands += len(commands)
        self.stats.prices += len(prints)
        self.stats.dead_letters += len(letters)
        ALERTS_ACTIVE.set(len(self.book))
        return letters

    def _decode(self, record: ConsumerRecord) -> Message:
        if record.value is None:
            raise SchemaError("message", {"<payload>": "empty record (a tombstone)"})
        message = decode(record.value)
        expected = (
            (AlertCreated, AlertCancelled)
            if record.topic == self.commands_topic
            else (type(message),)
            if print_of(message) is not None
            else ()
        )
        if not isinstance(message, expected):
            raise UnknownMessageError(
                message.type, {"type": f"{message.type} does not belong on {record.topic}"}
            )
        symbol = getattr(message, "symbol", None)
        if record.key is not None and symbol is not None and record.key != symbol.encode():
            detail = f"key {record.key!r} does not name the message's symbol {symbol!r}"
            raise SchemaError(message.type, {"symbol": detail})
        return message

    def _dead_letter(self, record: ConsumerRecord, error: SchemaError) -> DeadLetter:
        letter = DeadLetter.from_error(
            error,
            source=SOURCE,
            payload=record.value or b"",
            event_time=datetime.now(UTC),
            key=record.key,
            partition=record.partition,
            offset=record.offset,
        )
        DEAD_LETTERS.labels(source=SOURCE, reason=letter.reason).inc()
        log.warning(
            "alerts: %s[%d]@%d dead-lettered: %s",
            record.topic,
            record.partition,
            record.offset,
            error,
        )
        return letter

    async def _apply_commands(self, commands: list[Message]) -> None:
        created = [c for c in commands if isinstance(c, AlertCreated)]
        active = await self.store.still_active(c.alert_id for c in created)
        for command in commands:
            if isinstance(command, AlertCreated):
                if command.alert_id in active:
                    self.book.add(alert_from_command(command))
            else:
                assert isinstance(command, AlertCancelled)
                self.book.remove(command.alert_id)

    async def _fire(self, alert: Alert, seen: Print) -> None:
        if not await self.store.still_active([alert.alert_id]):
            self.book.remove(alert.alert_id)
            self.stats.stale += 1
            return
        notification = notification_for(alert, seen)
        await publish(self.notifications, self.notifications_topic, [(alert.user_id, notification)])
        won = await self.store.mark_triggered(alert, seen)
        self.book.remove(alert.alert_id)
        if won:
            self.stats.triggered += 1
            ALERTS_TRIGGERED.labels(outcome="won").inc()
            log.info(
                "alerts: %s fired for user %s: %s at %s (%s %s)",
                alert.alert_id,
                alert.user_id,
                alert.symbol,
                format_decimal(seen.price),
                alert.condition.value,
                format_decimal(alert.threshold),
            )
        else:
            self.stats.lost_races += 1
            ALERTS_TRIGGERED.labels(outcome="lost_race").inc()
            log.info("alerts: %s was marked TRIGGERED elsewhere first", alert.alert_id)


async def run_alerts(
    settings: Settings, stop: asyncio.Event, *, stats: AlertStats | None = None
) -> AlertStats:
    """Watch prices until ``stop`` is set; return the counters."""
    topics = catalog(settings)
    try:
        await ensure_topics(
            settings,
            [
                topics.market_trades,
                topics.trade_executions,
                topics.alert_commands,
                topics.notifications,
                topics.dead_letters,
            ],
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnavailableError(settings.kafka_bootstrap_servers, exc) from exc
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    try:
        store = AlertStore(mongo[settings.mongo_database][ALERTS])
        async with (
            consumer(settings, group_id=settings.alerts_group_id) as reader,
            producer(settings, enable_idempotence=True, acks="all", linger_ms=0) as writer,
        ):
            service = AlertsService(settings, store, writer, stats)
            reader.subscribe(service.input_topics, listener=service.listener)
            log.info(
                "alerts: %s -> %s (group %s)",
                ", ".join(service.input_topics),
                service.notifications_topic,
                settings.alerts_group_id,
            )
            await _consume(service, reader, writer, stop)
            return service.stats
    finally:
        await mongo.close()


async def _consume(
    service: AlertsService, reader: Any, writer: AIOKafkaProducer, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        fetched = await reader.getmany(timeout_ms=500, max_records=1000)
        records = [record for batch in fetched.values() for record in batch]
        if not records and not service.reload_needed:
            continue
        delay = 1.0
        while True:
            try:
                letters = await service.apply(records)
                if letters:
                    await publish(
                        writer, service.dead_letters_topic, [(SOURCE, letter) for letter in letters]
                    )
                break
            except (PyMongoError, OSError, KafkaUnavailableError, KafkaError) as exc:
                log.warning("alerts: batch not applied (%s); retrying in %.0f s", exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except TimeoutError:
                delay = min(delay * 2, _RETRY_MAX_S)
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        if offsets:
            try:
                await reader.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                log.warning("alerts: offsets not committed (%s); they will be re-read", exc)
