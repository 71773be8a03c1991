"""The push channel behind the WebSocket, on the real Kafka and Redis: offline users are pushed,
a refused push is retried at 1, 2, 4, 8 s through ``notifications-dlq-v1``, and what is never
taken ends in ``dead-letters-v1`` with its reason.

The notifications go straight onto ``notifications-v1`` (as the notifier writes them); the
device is the ``fake`` channel, made to fail through its Redis keys.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from brokerflow.kafka_io import producer, publish
from brokerflow.metrics import metric_value
from brokerflow.notifications import run_notifications
from brokerflow.notifications.push import FakeDevicePush
from brokerflow.schemas import DeadLetter, NotificationUndelivered, decode
from brokerflow.schemas.examples import ORDER_UPDATE_NOTIFICATION
from brokerflow.schemas.notifications import OrderUpdateNotification
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

from .api_harness import api_settings, delete_redis_keys
from .ingest_namespace import read_all
from .test_broker_end_to_end import eventually

pytestmark = pytest.mark.integration


def _notification(user_id: str, order_id: str) -> OrderUpdateNotification:
    return ORDER_UPDATE_NOTIFICATION.model_copy(
        update={"user_id": user_id, "order_id": order_id, "notification_id": f"{order_id}:3"}
    )


async def _records(settings: Settings, topic: str) -> list[Any]:
    return [decode(record.value) for record in await read_all(settings, topic, timeout_s=30)]


async def test_offline_users_are_pushed_refusals_retried_with_backoff_then_dead_lettered(
    settings: Settings, unique: str
) -> None:
    isolated = api_settings(
        settings, unique, notify_push="fake", notify_group_id=f"push-{unique}", topic_partitions=2
    )
    topics = catalog(isolated)
    await ensure_topics(isolated, list(topics))
    redis = Redis.from_url(isolated.redis_url)
    device = FakeDevicePush(redis, isolated.api_redis_prefix)
    gateway = redis.pubsub(ignore_subscribe_messages=True)
    stop = asyncio.Event()
    service = asyncio.create_task(run_notifications(isolated, stop))
    given_up = metric_value("notifications_given_up_total", reason="UNAVAILABLE")
    try:
        # Bia has a socket open (a gateway subscribed to her channel); Ana has none, and the
        # push service is down.
        await gateway.subscribe(f"{isolated.api_redis_prefix}user:bia")
        await redis.set(device.down_key, "maintenance window")
        async with producer(isolated) as writer:
            await publish(
                writer,
                topics.notifications.name,
                [("ana", _notification("ana", "o-ana")), ("bia", _notification("bia", "o-bia"))],
            )

            async def published() -> Any:
                return await gateway.get_message(timeout=1)  # None for the subscribe reply

            received = await eventually("Bia's message on her channel", published)
            assert json.loads(received["data"])["orderId"] == "o-bia"

            async def ana_retries(count: int) -> list[NotificationUndelivered]:
                found = [
                    m
                    for m in await _records(isolated, topics.notifications_undelivered.name)
                    if m.user_id == "ana"
                ]
                return found if len(found) >= count else []

            # The first try and the retry 1 s later are refused; the service comes back before
            # the retry 2 s after that, which gets through.
            await eventually("Ana's push refused twice", lambda: ana_retries(2), timeout_s=30)
            await redis.delete(device.down_key)

            async def ana_inbox() -> list[bytes]:
                return list(await redis.lrange(device.inbox("ana"), 0, -1))

            inbox = await eventually("Ana's push delivered", ana_inbox, timeout_s=30)
            await asyncio.sleep(3)  # a repeat, or a third retry, would show by now
            assert [json.loads(m)["orderId"] for m in await ana_inbox()] == ["o-ana"]
            assert json.loads(inbox[0])["sequence"] == 1  # the message as the socket has it
            assert await redis.llen(device.inbox("bia")) == 0  # online: no push
            retries = await ana_retries(2)
            assert [(r.attempts, r.reason) for r in retries] == [
                (1, "UNAVAILABLE"),
                (2, "UNAVAILABLE"),
            ]
            assert [r.retry_at - r.event_time for r in retries] == [
                timedelta(seconds=1),
                timedelta(seconds=2),
            ]
            assert retries[1].event_time >= retries[0].retry_at  # not retried early
            assert retries[0].detail == "maintenance window"

            async def letters(count: int) -> list[DeadLetter]:
                found = await _records(isolated, topics.dead_letters.name)
                return found if len(found) >= count else []

            # Caio has no device: no retry mends that. Then Dora's pushes are refused for good.
            await redis.sadd(device.unregistered_key, "caio")
            await publish(
                writer, topics.notifications.name, [("caio", _notification("caio", "o-caio"))]
            )
            await eventually("Caio given up", lambda: letters(1), timeout_s=30)
            await redis.set(device.down_key, "outage")
            await publish(
                writer, topics.notifications.name, [("dora", _notification("dora", "o-dora"))]
            )
            dead = await eventually("both given up", lambda: letters(2), timeout_s=60)
        by_reason = {letter.reason: letter for letter in dead}
        assert set(by_reason) == {"UNREGISTERED", "UNAVAILABLE"}
        assert by_reason["UNREGISTERED"].raw_key() == b"caio"
        assert json.loads(by_reason["UNREGISTERED"].payload)["orderId"] == "o-caio"
        assert by_reason["UNAVAILABLE"].raw_key() == b"dora"
        assert "after 5 tries over 15 s" in by_reason["UNAVAILABLE"].detail
        queued = await _records(isolated, topics.notifications_undelivered.name)
        assert [u.attempts for u in queued if u.user_id == "caio"] == []
        dora = [u for u in queued if u.user_id == "dora"]
        assert [u.attempts for u in dora] == [1, 2, 3, 4]
        assert [(u.retry_at - u.event_time).total_seconds() for u in dora] == [1, 2, 4, 8]
        assert metric_value("notifications_given_up_total", reason="UNAVAILABLE") == given_up + 1
        assert await redis.llen(device.inbox("dora")) == 0
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)
        await gateway.aclose()
        await redis.aclose()
        await delete_redis_keys(settings, unique)
