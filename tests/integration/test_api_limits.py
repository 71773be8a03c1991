"""Rate limits per user, and the API with a service down: 503 naming it, never a hang."""

from __future__ import annotations

import asyncio
import socket
import time

from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.api.security import Principal, TokenCodec
from brokerflow.settings import Settings
from brokerflow.stack.kafka import KafkaService

from .api_harness import LIMIT_BUY, api_namespace, sign_up

#: Not a timing assertion: a guard so that a hanging request fails the test instead of
#: stalling the suite.
HANG_GUARD_S = 60


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_the_rate_limit_is_per_user_with_headers_and_429(
    settings: Settings, unique: str, mongo_db: AsyncDatabase
) -> None:
    async with api_namespace(settings, unique, mongo_db, api_rate_limit="5/minute") as api:
        ana, bia = await sign_up(api.client, "ana"), await sign_up(api.client, "bia")
        remaining = []
        for _ in range(5):
            response = await api.client.get("/api/v1/account", headers=ana.auth)
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Limit"] == "5"
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert remaining == [4, 3, 2, 1, 0]

        limited = await api.client.get("/api/v1/account", headers=ana.auth)
        assert limited.status_code == 429
        assert limited.json()["code"] == "RATE_LIMITED"
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        assert limited.json()["retryAfter"] == retry_after
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        reset = int(limited.headers["X-RateLimit-Reset"])
        assert time.time() < reset <= time.time() + 61

        # Placing an order counts too, and is refused before anything is sent.
        order = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=ana.auth)
        assert order.status_code == 429
        assert api.stand_in.seen  # the sign-ups' OpenAccount
        assert all(r.type != "RequestOrder" for r in api.stand_in.seen)

        other = await api.client.get("/api/v1/account", headers=bia.auth)
        assert other.status_code == 200
        assert other.headers["X-RateLimit-Remaining"] == "4"


async def test_kafka_down_is_503_naming_the_servers(
    settings: Settings, unique: str, mongo_db: AsyncDatabase
) -> None:
    servers = f"127.0.0.1:{_closed_port()}"
    async with (
        asyncio.timeout(HANG_GUARD_S),
        api_namespace(
            settings,
            unique,
            mongo_db,
            stand_in=False,
            kafka_bootstrap_servers=servers,
            api_io_timeout_ms=1000,
        ) as api,
    ):
        signup = await api.client.post(
            "/api/v1/users", json={"username": "ana", "password": "correct-horse-42"}
        )
        assert signup.status_code == 503
        assert signup.json()["code"] == "KAFKA_UNAVAILABLE"
        assert f"Kafka at {servers} is unavailable" in signup.json()["message"]
        assert "brokerflow stack up" in signup.json()["message"]
        assert signup.headers["Retry-After"] == "5"
        assert await api.db["users"].count_documents({}) == 0  # no user without an account

        codec = TokenCodec(api.settings.api_jwt_secret, 3600)
        auth = {"Authorization": f"Bearer {codec.issue(Principal('u-1', 'a-1'))}"}
        for path, body in [
            ("/api/v1/orders", LIMIT_BUY),
            ("/api/v1/account/deposits", {"currency": "BRL", "amount": "10"}),
        ]:
            response = await api.client.post(path, json=body, headers=auth)
            assert response.status_code == 503, path
            assert servers in response.json()["message"]
        assert await api.db["orders"].count_documents({}) == 0

        # Reads need only MongoDB and Redis.
        account = await api.client.get("/api/v1/account", headers=auth)
        assert account.status_code == 200
        health = await api.client.get("/api/v1/health")
        assert health.json() == {"status": "degraded", "kafka": False}


async def test_redis_down_is_503(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> None:
    redis_url = f"redis://127.0.0.1:{_closed_port()}/0"
    async with (
        asyncio.timeout(HANG_GUARD_S),
        api_namespace(
            settings, unique, mongo_db, stand_in=False, redis_url=redis_url, api_io_timeout_ms=1000
        ) as api,
    ):
        user = await sign_up(api.client, "ana")  # signing up needs no Redis
        response = await api.client.get("/api/v1/account", headers=user.auth)
        assert response.status_code == 503
        assert response.json()["code"] == "REDIS_UNAVAILABLE"
        assert f"Redis at {redis_url} is unavailable" in response.json()["message"]


async def test_mongo_down_is_503(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> None:
    mongo_url = f"mongodb://127.0.0.1:{_closed_port()}/"
    async with (
        asyncio.timeout(HANG_GUARD_S),
        api_namespace(
            settings, unique, mongo_db, stand_in=False, mongo_url=mongo_url, api_io_timeout_ms=1000
        ) as api,
    ):
        response = await api.client.post(
            "/api/v1/auth/token", json={"username": "ana", "password": "correct-horse-42"}
        )
        assert response.status_code == 503
        assert response.json()["code"] == "MONGO_UNAVAILABLE"
        assert f"MongoDB at {mongo_url} is unavailable" in response.json()["message"]


async def test_kafka_lost_mid_session_is_503_not_a_hang(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, throwaway_broker: KafkaService
) -> None:
    """The broker dies after the API connected: the send is bounded (API_IO_TIMEOUT_MS) and the
    answer is 503 naming the servers; the order is left PENDING, for a retry with its key."""
    async with (
        asyncio.timeout(HANG_GUARD_S),
        api_namespace(
            settings,
            unique,
            mongo_db,
            stand_in=False,
            kafka_bootstrap_servers=throwaway_broker.bootstrap,
            api_io_timeout_ms=2000,
            api_decision_wait_ms=200,
        ) as api,
    ):
        user = await sign_up(api.client, "ana")
        assert throwaway_broker.stop()
        keyed = {**user.auth, "Idempotency-Key": "during-outage"}
        response = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=keyed)
        assert response.status_code == 503
        assert response.json()["code"] == "KAFKA_UNAVAILABLE"
        assert f"Kafka at {throwaway_broker.bootstrap}" in response.json()["message"]
        (order,) = await api.db["orders"].find({"userId": user.user_id}).to_list()
        assert order["status"] == "PENDING"
        # The key was given back: a retry runs again (and fails the same way while Kafka is down).
        again = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=keyed)
        assert again.status_code == 503
