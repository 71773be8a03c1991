"""The notification service: order events in, each user's notifications out, delivered once.

Two stages in one process, each a consumer group committing after its batch is done (at least
once; the ids make repeats harmless):

* **notifier** (``NOTIFY_GROUP_ID``): ``execution-reports-v1`` (the exchange's events of orders
  placed with an account, keyed by account) -> :func:`~.core.order_update` ->
  ``notifications-v1`` keyed by user. Who placed an order (user, side) comes from the API's order
  document, written before the order reached Kafka; an event of an order with none (a tape
  published straight to the exchange) is counted as ``unknown_order`` and skipped.
* **delivery** (``NOTIFY_GROUP_ID-delivery``): ``notifications-v1`` (order updates and the
  alerts service's ``PriceAlertTriggered``) -> :class:`~.store.NotificationStore`: a per-user
  sequence, a backlog, and ``PUBLISH user:{userId}``, which every WebSocket gateway
  (``/ws/v1/orders`` in the API) subscribed for that user forwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from brokerflow.errors import SchemaError
from brokerflow.kafka_io import KafkaUnavailableError, consumer, producer, publish
from brokerflow.metrics import NOTIFICATIONS_DELIVERED, NOTIFICATIONS_PUBLISHED
from brokerflow.notifications.core import OrderOwner, order_update, socket_payload
from brokerflow.notifications.store import NotificationStore
from brokerflow.projections.folds import ORDERS
from brokerflow.schemas import decode
from brokerflow.schemas.notifications import OrderUpdateNotification, PriceAlertTriggered
from brokerflow.schemas.orders import Side
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

__all__ = ["Owners", "run_notifications"]

log = logging.getLogger(__name__)

_RETRY_MAX_S = 10.0
_OWNERS_CACHED = 100_000


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


async def _notify_batch(
    records: list[ConsumerRecord], owners: Owners, writer: Any, topic: str
) -> int:
    events = []
    for record in records:
        try:
            events.append(decode(record.value))
        except SchemaError as exc:  # the exchange wrote it; say so and go on
            log.error(
                "notifier: %s[%d]@%d unreadable: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
    known = await owners.of({e.__dict__["order_id"] for e in events if "order_id" in e.__dict__})
    out: list[tuple[str, OrderUpdateNotification]] = []
    for event in events:
        owner = known.get(event.__dict__.get("order_id", ""))
        if owner is None:
            NOTIFICATIONS_PUBLISHED.labels(event="unknown_order").inc()
            continue
        notification = order_update(event, owner)
        if notification is not None:
            out.append((owner.user_id, notification))
            NOTIFICATIONS_PUBLISHED.labels(event=event.type).inc()
    if out:
        await publish(writer, topic, out)
    return len(out)


async def _deliver_batch(records: list[ConsumerRecord], store: NotificationStore) -> int:
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
        sequence = await store.deliver(
            notification.user_id, notification.notification_id, socket_payload(notification)
        )
        NOTIFICATIONS_DELIVERED.labels(outcome="new" if sequence > 0 else "repeat").inc()
        delivered += sequence > 0
    return delivered


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
                await apply(records)
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
        await ensure_topics(settings, [topics.execution_reports, topics.notifications])
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
                settings, topics.execution_reports.name, group_id=settings.notify_group_id
            ) as reports,
            consumer(
                settings, topics.notifications.name, group_id=f"{settings.notify_group_id}-delivery"
            ) as notifications,
            producer(settings, enable_idempotence=True, acks="all", linger_ms=0) as writer,
        ):
            log.info(
                "notifications: %s -> %s -> Redis %suser:{userId} (groups %s, %s-delivery)",
                topics.execution_reports.name,
                topics.notifications.name,
                settings.api_redis_prefix,
                settings.notify_group_id,
                settings.notify_group_id,
            )

            async def notify(records: list[ConsumerRecord]) -> None:
                await _notify_batch(records, owners, writer, topics.notifications.name)

            async def deliver(records: list[ConsumerRecord]) -> None:
                await _deliver_batch(records, store)

            await asyncio.gather(
                _stage("notifier", reports, notify, stop),
                _stage("delivery", notifications, deliver, stop),
            )
    finally:
        await redis.aclose()
        await mongo.close()
