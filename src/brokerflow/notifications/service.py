"""The notification service: order events in, each user's notifications out, delivered once.

Two stages in one process, each a consumer group committing after its batch is done (at least
once; the ids make repeats harmless):

* **notifier** (``NOTIFY_GROUP_ID``): ``execution-reports-v1`` (the exchange's events of orders
  placed with an account, keyed by account) -> :func:`~.core.order_update` ->
  ``notifications-v1`` keyed by user. A fill's ``positionQty`` comes from the accounts agent's
  ``FillSettled`` of the same trade on ``ledger-events-v1`` (keyed by account too, so one
  instance reads both halves of an account): a batch with a fill whose settlement has not been
  read waits for it until the fill is ``NOTIFY_POSITION_WAIT_MS`` old, then goes without.
  Who placed an order (user, side) comes from the API's order document, written before the
  order reached Kafka; an event of an order with none (a tape published straight to the
  exchange) is counted as ``unknown_order`` and skipped.
* **delivery** (``NOTIFY_GROUP_ID-delivery``): ``notifications-v1`` (order updates and the
  alerts service's ``PriceAlertTriggered``) -> :class:`~.store.NotificationStore`: a per-user
  sequence, a backlog, and ``PUBLISH user:{userId}``, which every WebSocket gateway
  (``/ws/v1/orders`` in the API) subscribed for that user forwards. When no gateway received
  it (the user has no open socket), the notification goes to the push channel
  (:mod:`~.push`); a refusal goes to ``notifications-dlq-v1`` with its reason.
* **retry** (``NOTIFY_GROUP_ID-retry``): ``notifications-dlq-v1`` -> the push channel again at
  each notification's ``retryAt``, backing off ``NOTIFY_RETRY_BACKOFF_S`` (1, 2, 4, 8 s); what
  is still refused after the last wait, or refused for good (no device), goes to
  ``dead-letters-v1`` with the reason and is counted in ``notifications_given_up_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from brokerflow.errors import SchemaError
from brokerflow.kafka_io import KafkaUnavailableError, consumer, producer, publish
from brokerflow.metrics import (
    DEAD_LETTERS,
    NOTIFICATIONS_DELIVERED,
    NOTIFICATIONS_GIVEN_UP,
    NOTIFICATIONS_PUBLISHED,
    NOTIFICATIONS_PUSHED,
    NOTIFICATIONS_RETRIED,
    NOTIFICATIONS_WITHOUT_POSITION,
)
from brokerflow.notifications.core import (
    OrderOwner,
    fill_key,
    next_retry_wait,
    order_update,
    socket_payload,
)
from brokerflow.notifications.push import PushChannel, PushRefusedError, push_channel
from brokerflow.notifications.store import NotificationStore
from brokerflow.projections.folds import ORDERS
from brokerflow.schemas import DeadLetter, decode
from brokerflow.schemas.base import Message
from brokerflow.schemas.ledger import FillSettled
from brokerflow.schemas.notifications import (
    NotificationChannel,
    NotificationUndelivered,
    OrderUpdateNotification,
    PriceAlertTriggered,
)
from brokerflow.schemas.orders import OrderFilled, OrderPartiallyFilled, Side
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

__all__ = ["FillPositions", "Owners", "Pusher", "run_notifications"]

log = logging.getLogger(__name__)

_RETRY_MAX_S = 10.0
_OWNERS_CACHED = 100_000
_POSITIONS_KEPT = 100_000


class Owners:
    """Order id -> who placed it, from MongoDB ``orders``, remembered (bounded, LRU)."""

    def __init__(self, orders: AsyncCollection[dict[str, Any]]) -> None:
        self.orders = orders
        self.known: OrderedDict[str, OrderOwner] = OrderedDict()

    async def of(self, order_ids: set[str]) -> dict[str, OrderOwner]:
        missing = [order_id for order_id in order_ids if order_id not in self.known]
        if missing:
            projection = {"userId": 1, "accountId": 1, "side": 1}
            async for document in self.orders.find({"_id": {"$in": missing}}, projection):
                user, account, side = (document.get(k) for k in ("userId", "accountId", "side"))
                if user and account and side in Side.__members__:
                    self.known[str(document["_id"])] = OrderOwner(user, account, Side(side))
        found: dict[str, OrderOwner] = {}
        for order_id in order_ids:
            owner = self.known.get(order_id)
            if owner is not None:
                self.known.move_to_end(order_id)
                found[order_id] = owner
        while len(self.known) > _OWNERS_CACHED:
            self.known.popitem(last=False)
        return found


class FillPositions:
    """(orderId, tradeId) -> the account's position after that fill, from ``FillSettled``
    records (bounded: the oldest are forgotten first)."""

    def __init__(self) -> None:
        self.known: OrderedDict[tuple[str, str], Decimal] = OrderedDict()

    def learn(self, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            if b'"FillSettled"' not in record.value:  # most ledger entries are not fills
                continue
            try:
                entry = decode(record.value)
            except SchemaError:
                continue  # the accounts agent's; the projector reports it
            if isinstance(entry, FillSettled):
                self.known[(entry.order_id, entry.trade_id)] = entry.position_quantity
        while len(self.known) > _POSITIONS_KEPT:
            self.known.popitem(last=False)

    def of(self, key: tuple[str, str] | None) -> Decimal | None:
        return None if key is None else self.known.get(key)


class Notifier:
    """Execution reports (and the ledger's fills) -> notifications-v1."""

    def __init__(
        self,
        reader: Any,
        writer: Any,
        owners: Owners,
        topics: Any,
        wait_s: float,
        stop: asyncio.Event,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.owners = owners
        self.reports_topic = topics.execution_reports.name
        self.ledger_topic = topics.ledger_events.name
        self.out_topic = topics.notifications.name
        self.positions = FillPositions()
        self.wait_s = wait_s
        self.stop = stop

    async def __call__(self, records: list[ConsumerRecord]) -> int:
        self.positions.learn([r for r in records if r.topic == self.ledger_topic])
        events: list[tuple[Message, float]] = []  # with the time Kafka took the record
        for record in records:
            if record.topic != self.reports_topic:
                continue
            try:
                events.append((decode(record.value), record.timestamp / 1000))
            except SchemaError as exc:  # the exchange wrote it; say so and go on
                log.error(
                    "notifier: %s[%d]@%d unreadable: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
        known = await self.owners.of(
            {e.__dict__["order_id"] for e, _ in events if "order_id" in e.__dict__}
        )
        fills: dict[tuple[str, str], float] = {}
        for event, written in events:
            key = fill_key(event)
            is_fill = isinstance(event, OrderFilled | OrderPartiallyFilled)
            if key is not None and is_fill and key[0] in known:
                fills[key] = written
        await self._await_positions(fills)
        out: list[tuple[str, OrderUpdateNotification]] = []
        for event, _ in events:
            owner = known.get(event.__dict__.get("order_id", ""))
            if owner is None:
                NOTIFICATIONS_PUBLISHED.labels(event="unknown_order").inc()
                continue
            notification = order_update(event, owner, self.positions.of(fill_key(event)))
            if notification is not None:
                out.append((owner.user_id, notification))
                NOTIFICATIONS_PUBLISHED.labels(event=event.type).inc()
        if out:
            await publish(self.writer, self.out_topic, out)
        return len(out)

    async def _await_positions(self, fills: dict[tuple[str, str], float]) -> None:
        """Read the ledger on until every fill's settlement is in, or until each waiting fill
        is ``wait_s`` old (from when Kafka took it): a notifier behind its input waits for
        nothing, so the wait never adds up into a backlog."""
        while not self.stop.is_set():
            missing = [written for key, written in fills.items() if self.positions.of(key) is None]
            left = max(missing, default=0.0) + self.wait_s - time.time()
            if not missing or left <= 0:
                if missing:
                    NOTIFICATIONS_WITHOUT_POSITION.inc(len(missing))
                return
            ledger = [tp for tp in self.reader.assignment() if tp.topic == self.ledger_topic]
            if not ledger:
                return
            fetched = await self.reader.getmany(
                *ledger, timeout_ms=int(min(left, 0.2) * 1000) + 1, max_records=500
            )
            for batch in fetched.values():
                self.positions.learn(batch)


class Pusher:
    """The push channel with its retry queue and its dead letters."""

    def __init__(
        self,
        channel: PushChannel,
        writer: Any,
        retry_topic: str,
        dead_letter_topic: str,
        backoff: Sequence[float],
    ) -> None:
        self.channel = channel
        self.writer = writer
        self.retry_topic = retry_topic
        self.dead_letter_topic = dead_letter_topic
        self.backoff = tuple(backoff)

    async def first_try(self, user_id: str, notification_id: str, message: str) -> bool:
        """Push a notification no socket received; a refusal is queued for retry."""
        try:
            await self.channel.send(user_id, notification_id, message)
        except PushRefusedError as refused:
            NOTIFICATIONS_PUSHED.labels(channel=self.channel.name, outcome="refused").inc()
            await self._after_refusal(user_id, notification_id, message, 1, refused)
            return False
        NOTIFICATIONS_PUSHED.labels(channel=self.channel.name, outcome="sent").inc()
        return True

    async def retry(self, undelivered: NotificationUndelivered) -> bool:
        """Push it again; a refusal is queued once more or given up."""
        try:
            await self.channel.send(
                undelivered.user_id, undelivered.notification_id, undelivered.payload
            )
        except PushRefusedError as refused:
            NOTIFICATIONS_PUSHED.labels(channel=self.channel.name, outcome="refused").inc()
            NOTIFICATIONS_RETRIED.labels(outcome="refused").inc()
            await self._after_refusal(
                undelivered.user_id,
                undelivered.notification_id,
                undelivered.payload,
                undelivered.attempts + 1,
                refused,
            )
            return False
        NOTIFICATIONS_PUSHED.labels(channel=self.channel.name, outcome="sent").inc()
        NOTIFICATIONS_RETRIED.labels(outcome="sent").inc()
        return True

    async def _after_refusal(
        self,
        user_id: str,
        notification_id: str,
        message: str,
        attempts: int,
        refused: PushRefusedError,
    ) -> None:
        now = datetime.now(UTC)
        wait = next_retry_wait(attempts, self.backoff) if refused.retryable else None
        if wait is not None:
            retry = NotificationUndelivered(
                notification_id=notification_id,
                user_id=user_id,
                attempts=attempts,
                reason=refused.reason,
                detail=refused.detail[:1000],
                retry_at=now + timedelta(seconds=wait),
                payload=message,
                event_time=now,
            )
            await publish(self.writer, self.retry_topic, [(user_id, retry)])
            return
        tries = f"{attempts} tries over {sum(self.backoff[: attempts - 1]):g} s"
        letter = DeadLetter.from_payload(
            source=self.retry_topic,
            reason=refused.reason,
            detail=f"push of {notification_id} to user {user_id} given up after {tries}: "
            f"{refused.detail}",
            payload=message,
            key=user_id,
            event_time=now,
        )
        await publish(self.writer, self.dead_letter_topic, [(self.retry_topic, letter)])
        NOTIFICATIONS_GIVEN_UP.labels(reason=refused.reason).inc()
        DEAD_LETTERS.labels(source=self.retry_topic, reason=refused.reason).inc()
        log.warning("push of %s to user %s given up: %s", notification_id, user_id, refused)


async def _deliver_batch(
    records: list[ConsumerRecord], store: NotificationStore, pusher: Pusher | None
) -> int:
    delivered = 0
    for record in records:
        try:
            notification = decode(record.value)
        except SchemaError as exc:
            log.error(
                "delivery: notifications-v1[%d]@%d unreadable: %s",
                record.partition,
                record.offset,
                exc,
            )
            continue
        if not isinstance(notification, OrderUpdateNotification | PriceAlertTriggered):
            continue
        done = await store.deliver(
            notification.user_id, notification.notification_id, socket_payload(notification)
        )
        NOTIFICATIONS_DELIVERED.labels(outcome="new" if done.new else "repeat").inc()
        delivered += done.new
        offline = done.new and done.receivers == 0
        if offline and pusher is not None and NotificationChannel.PUSH in notification.channels:
            await pusher.first_try(notification.user_id, notification.notification_id, done.message)
    return delivered


async def _retry_batch(records: list[ConsumerRecord], pusher: Pusher, stop: asyncio.Event) -> bool:
    """Retry each at its time, earliest first; ``False`` when stopped before the end."""
    due: list[NotificationUndelivered] = []
    for record in records:
        try:
            message = decode(record.value)
        except SchemaError as exc:
            log.error(
                "retry: %s[%d]@%d unreadable: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            continue
        if isinstance(message, NotificationUndelivered):
            due.append(message)
    for undelivered in sorted(due, key=lambda u: u.retry_at):
        wait = (undelivered.retry_at - datetime.now(UTC)).total_seconds()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                return False
            except TimeoutError:
                pass
        await pusher.retry(undelivered)
    return True


async def _stage(name: str, reader: Any, apply: Any, stop: asyncio.Event) -> None:
    """Fetch, apply until it works (backing off), commit; until ``stop``."""
    while not stop.is_set():
        fetched = await reader.getmany(timeout_ms=200, max_records=500)
        records = [record for batch in fetched.values() for record in batch]
        if not records:
            continue
        delay = 0.5
        while True:
            try:
                if await apply(records) is False:  # stopped half-way: re-read next time
                    return
                break
            except (PyMongoError, RedisError, OSError, KafkaUnavailableError, KafkaError) as exc:
                log.warning("%s: batch not applied (%s); retrying in %.1f s", name, exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except TimeoutError:
                delay = min(delay * 2, _RETRY_MAX_S)
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await reader.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("%s: offsets not committed (%s); they will be re-read", name, exc)


async def run_notifications(settings: Settings, stop: asyncio.Event) -> None:
    """Both stages until ``stop`` is set."""
    topics = catalog(settings)
    try:
        await ensure_topics(
            settings,
            [
                topics.execution_reports,
                topics.ledger_events,
                topics.notifications,
                topics.notifications_undelivered,
                topics.dead_letters,
            ],
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnavailableError(settings.kafka_bootstrap_servers, exc) from exc
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    redis = Redis.from_url(settings.redis_url)
    store = NotificationStore(
        redis, settings.api_redis_prefix, settings.notify_backlog, settings.notify_retention_s
    )
    owners = Owners(mongo[settings.mongo_database][ORDERS])
    try:
        async with (
            consumer(
                settings,
                topics.execution_reports.name,
                topics.ledger_events.name,
                group_id=settings.notify_group_id,
                # co-partitioned by account: an account's reports and ledger to one member
                partition_assignment_strategy=(RangePartitionAssignor,),
            ) as reports,
            consumer(
                settings, topics.notifications.name, group_id=f"{settings.notify_group_id}-delivery"
            ) as notifications,
            consumer(
                settings,
                topics.notifications_undelivered.name,
                group_id=f"{settings.notify_group_id}-retry",
            ) as undelivered,
            producer(settings, enable_idempotence=True, acks="all", linger_ms=0) as writer,
        ):
            channel = push_channel(settings.notify_push, redis, settings.api_redis_prefix)
            pusher = Pusher(
                channel,
                writer,
                topics.notifications_undelivered.name,
                topics.dead_letters.name,
                settings.notify_retry_backoff_s,
            )
            log.info(
                "notifications: %s -> %s -> Redis %suser:{userId}, or push (%s) -> %s "
                "(groups %s, %s-delivery, %s-retry)",
                topics.execution_reports.name,
                topics.notifications.name,
                settings.api_redis_prefix,
                channel.name,
                topics.notifications_undelivered.name,
                settings.notify_group_id,
                settings.notify_group_id,
                settings.notify_group_id,
            )

            notify = Notifier(
                reports, writer, owners, topics, settings.notify_position_wait_ms / 1000, stop
            )

            async def deliver(records: list[ConsumerRecord]) -> None:
                await _deliver_batch(records, store, None if channel.name == "none" else pusher)

            async def retry(records: list[ConsumerRecord]) -> bool:
                return await _retry_batch(records, pusher, stop)

            await asyncio.gather(
                _stage("notifier", reports, notify, stop),
                _stage("delivery", notifications, deliver, stop),
                _stage("retry", undelivered, retry, stop),
            )
    finally:
        await redis.aclose()
        await mongo.close()
