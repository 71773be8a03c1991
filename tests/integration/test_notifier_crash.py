"""The notification service killed with SIGKILL mid-stream and started again, as a real process.

Execution reports of three users' orders are written while ``python -m brokerflow.notifications``
delivers them; it is killed -9 part-way and restarted. Every update must reach its user's
stored stream exactly once (at least once from Kafka, the repeats dropped by their id), with
gap-free sequences, each order's events in their order, and a gateway subscribed throughout must
have been sent each one once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from brokerflow.kafka_io import producer, publish
from brokerflow.notifications import NotificationStore
from brokerflow.schemas.base import Message
from brokerflow.schemas.examples import example_of
from brokerflow.schemas.orders import OrderAccepted, OrderFilled, OrderPartiallyFilled
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

from .api_harness import api_settings, delete_redis_keys
from .test_broker_end_to_end import eventually

pytestmark = pytest.mark.integration

USERS = ("ana", "bia", "caio")
ORDERS_PER_USER = 40
T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)


def _events(user: str, n: int, sequence: int) -> list[Message]:
    """Accepted, partially filled, filled: three updates of one order of 100."""
    order_id, account_id = f"{user}-o{n}", f"acc-{user}"
    common = {"order_id": order_id, "account_id": account_id, "symbol": "PETR4"}
    t = T0 + timedelta(seconds=sequence)
    accepted = example_of(OrderAccepted).model_copy(
        update={
            **common,
            "sequence": sequence,
            "filled_quantity": Decimal(0),
            "leaves_quantity": Decimal(100),
            "quantity": Decimal(100),
            "event_time": t,
        }
    )
    fills = [
        example_of(cls).model_copy(
            update={
                **common,
                "sequence": sequence + step,
                "trade_id": f"PETR4-T{sequence + step}",
                "last_quantity": Decimal(quantity),
                "last_price": Decimal("38.00"),
                "filled_quantity": Decimal(filled),
                "leaves_quantity": Decimal(100 - filled),
                "event_time": t,
            }
        )
        for step, cls, quantity, filled in (
            (1, OrderPartiallyFilled, 40, 40),
            (2, OrderFilled, 60, 100),
        )
    ]
    return [accepted, *fills]


def _env(isolated: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": isolated.kafka_bootstrap_servers,
        "TOPIC_PREFIX": isolated.topic_prefix,
        "TOPIC_PARTITIONS": str(isolated.topic_partitions),
        "MONGO_URL": isolated.mongo_url,
        "MONGO_DATABASE": isolated.mongo_database,
        "REDIS_URL": isolated.redis_url,
        "API_REDIS_PREFIX": isolated.api_redis_prefix,
        "NOTIFY_GROUP_ID": isolated.notify_group_id,
        "NOTIFY_PUSH": "none",
        "NOTIFY_POSITION_WAIT_MS": "0",  # no accounts agent here to settle the fills
        "METRICS_PORT": "0",
        "LOG_LEVEL": "INFO",
    }


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "brokerflow.notifications"], env=env, stdout=out, stderr=out
        )


async def test_killed_with_sigkill_and_restarted_it_delivers_every_update_once_in_order(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    isolated = api_settings(settings, unique, notify_group_id=f"crash-{unique}")
    topics = catalog(isolated)
    await ensure_topics(isolated, list(topics))
    await mongo_db["orders"].insert_many(
        [
            {"_id": f"{user}-o{n}", "userId": user, "accountId": f"acc-{user}", "side": "BUY"}
            for user in USERS
            for n in range(ORDERS_PER_USER)
        ]
    )
    redis = Redis.from_url(isolated.redis_url)
    store = NotificationStore(redis, isolated.api_redis_prefix, 10_000, 3600)
    gateway = redis.pubsub(ignore_subscribe_messages=True)
    await gateway.subscribe(store.channel("ana"))
    sent_to_ana: list[dict[str, Any]] = []

    async def listen() -> None:
        while True:
            message = await gateway.get_message(timeout=1)
            if message is not None:
                sent_to_ana.append(json.loads(message["data"]))

    listener = asyncio.create_task(listen())
    log = tmp_path / "notifications.log"
    env = _env(isolated)
    service = _start(env, log)
    expected = len(USERS) * ORDERS_PER_USER * 3

    async def delivered() -> int:
        return sum([(await store.after(user, 0)).last_sequence for user in USERS])

    try:
        async with producer(isolated) as writer:
            sequence = 0
            for n in range(ORDERS_PER_USER):
                batch = []
                for user in USERS:
                    batch += [(f"acc-{user}", e) for e in _events(user, n, sequence)]
                    sequence += 3
                await publish(writer, topics.execution_reports.name, batch)
                if n == ORDERS_PER_USER // 3:
                    await eventually("some delivered", delivered, timeout_s=60)
                    service.send_signal(signal.SIGKILL)
                    assert service.wait(30) == -signal.SIGKILL
                if n == ORDERS_PER_USER // 2:
                    service = _start(env, log)  # restarted with a backlog waiting
                await asyncio.sleep(0.05)

        async def all_delivered() -> bool:
            return await delivered() >= expected

        await eventually("every update delivered", all_delivered, timeout_s=120)
        await asyncio.sleep(2)  # a late repeat would land now
        for user in USERS:
            stream = [json.loads(m) for m in (await store.after(user, 0)).messages]
            assert [m["sequence"] for m in stream] == list(range(1, ORDERS_PER_USER * 3 + 1))
            ids = [m["notificationId"] for m in stream]
            assert len(set(ids)) == len(ids)
            assert {m["orderId"] for m in stream} == {
                f"{user}-o{n}" for n in range(ORDERS_PER_USER)
            }
            for n in range(ORDERS_PER_USER):
                of_order = [m for m in stream if m["orderId"] == f"{user}-o{n}"]
                assert [(m["status"], m["filledQty"]) for m in of_order] == [
                    ("OPEN", "0"),
                    ("PARTIALLY_FILLED", "40"),
                    ("FILLED", "100"),
                ]
        assert [m["sequence"] for m in sent_to_ana] == list(range(1, ORDERS_PER_USER * 3 + 1))
    except BaseException:
        print(log.read_text()[-4000:])
        raise
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
        listener.cancel()
        await gateway.aclose()
        await redis.aclose()
        await delete_redis_keys(settings, unique)
