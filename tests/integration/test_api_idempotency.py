"""Idempotent order submission (seed 002, deep dive 6) on the real stack.

Same key and body: the first answer again with ``Idempotent-Replayed: true``; another body:
422; in flight: 409; 50 concurrent retries: one order, one hold, one order id in every answer;
a lost Redis claim: the MongoDB ``_id`` backstop still places one order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from brokerflow.schemas.accounts import RequestOrder
from brokerflow.settings import Settings

from .api_harness import LIMIT_BUY, Api, User, api_namespace, funded_user


@pytest.fixture
async def api(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> AsyncIterator[Api]:
    async with api_namespace(settings, unique, mongo_db, api_idempotency_ttl_s=3600) as namespace:
        yield namespace


def _keyed(user: User, key: str) -> dict[str, str]:
    return {**user.auth, "Idempotency-Key": key}


async def _settled(api: Api, user: User) -> None:
    """Wait until the stand-in agent has read everything this account sent so far: one more
    request on the account's partition is answered only after all before it."""
    sync = await api.client.post(
        "/api/v1/account/deposits", json={"currency": "BRL", "amount": "1"}, headers=user.auth
    )
    assert sync.json()["status"] == "ACCEPTED"


def _requests_for(api: Api, order_id: str) -> list[RequestOrder]:
    return [r for r in api.stand_in.seen if isinstance(r, RequestOrder) and r.order_id == order_id]


async def test_a_retry_gets_the_first_answer(api: Api) -> None:
    user = await funded_user(api, "ana")
    first = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(user, "k-1"))
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    # The same order written differently (100.0 is 100) and the key in the body instead.
    again = await api.client.post(
        "/api/v1/orders",
        json={**LIMIT_BUY, "quantity": "100.0", "idempotencyKey": "k-1"},
        headers=user.auth,
    )
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]

    await _settled(api, user)
    assert len(_requests_for(api, first.json()["orderId"])) == 1
    assert api.stand_in.accounts[user.account_id].held["BRL"] == Decimal("3812.00")
    assert await api.db["orders"].count_documents({"userId": user.user_id}) == 1


async def test_a_refusal_is_replayed_too(api: Api) -> None:
    user = await funded_user(api, "bia", amount="100.00")
    first = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(user, "k-2"))
    again = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(user, "k-2"))
    assert first.status_code == again.status_code == 403
    assert again.json() == first.json()
    assert again.json()["code"] == "INSUFFICIENT_BUYING_POWER"
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_the_key_with_another_body_is_422_and_two_different_keys_are_400(api: Api) -> None:
    user = await funded_user(api, "caio")
    first = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(user, "k-3"))
    assert first.status_code == 202
    other = await api.client.post(
        "/api/v1/orders", json={**LIMIT_BUY, "quantity": "101"}, headers=_keyed(user, "k-3")
    )
    assert other.status_code == 422
    assert (other.json()["code"], other.json()["field"]) == (
        "IDEMPOTENCY_KEY_REUSED",
        "idempotencyKey",
    )
    both = await api.client.post(
        "/api/v1/orders",
        json={**LIMIT_BUY, "idempotencyKey": "k-4"},
        headers=_keyed(user, "k-5"),
    )
    assert (both.status_code, both.json()["code"]) == (400, "IDEMPOTENCY_KEY_MISMATCH")


async def test_keys_belong_to_their_user(api: Api) -> None:
    ana, bia = await funded_user(api, "dani"), await funded_user(api, "eli")
    first = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(ana, "same"))
    second = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(bia, "same"))
    assert first.json()["status"] == second.json()["status"] == "ACCEPTED"
    assert first.json()["orderId"] != second.json()["orderId"]
    assert "Idempotent-Replayed" not in second.headers


async def test_fifty_concurrent_retries_place_one_order(api: Api) -> None:
    user = await funded_user(api, "fred")
    answers = await asyncio.gather(
        *(
            api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(user, "storm"))
            for _ in range(50)
        )
    )
    placed = await api.db["orders"].find({"userId": user.user_id}).to_list()
    assert len(placed) == 1
    order_id = placed[0]["_id"]
    statuses = sorted({answer.status_code for answer in answers})
    assert set(statuses) <= {202, 409}, [a.text for a in answers if a.status_code not in (202, 409)]
    assert all(answer.json()["orderId"] == order_id for answer in answers)
    in_flight = [a for a in answers if a.status_code == 409]
    assert all(a.json()["code"] == "REQUEST_IN_PROGRESS" for a in in_flight)
    originals = [
        a for a in answers if a.status_code == 202 and "Idempotent-Replayed" not in a.headers
    ]
    assert len(originals) == 1

    await _settled(api, user)
    assert len(_requests_for(api, order_id)) == 1
    assert api.stand_in.accounts[user.account_id].held["BRL"] == Decimal("3812.00")


async def test_a_lost_claim_still_places_one_order(api: Api) -> None:
    """Redis forgets the key (restart, failover): the derived order id and the orders
    collection's _id stop a second order."""
    user = await funded_user(api, "gus")
    first = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(user, "k-9"))
    assert first.json()["status"] == "ACCEPTED"
    key = f"{api.settings.api_redis_prefix}idem:{user.user_id}:k-9"
    redis = Redis.from_url(api.settings.redis_url)
    try:
        ttl = await redis.ttl(key)
        assert 3000 < ttl <= 3600  # the answer is kept API_IDEMPOTENCY_TTL_S
        assert await redis.delete(key) == 1
    finally:
        await redis.aclose()

    again = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=_keyed(user, "k-9"))
    assert again.status_code == 202
    assert again.json()["orderId"] == first.json()["orderId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await api.db["orders"].count_documents({"userId": user.user_id}) == 1
    await _settled(api, user)
    # The still-PENDING order was sent again (it might never have reached Kafka); the agent
    # refused the copy (ORDER_ID_IN_USE) and held the funds once.
    assert len(_requests_for(api, first.json()["orderId"])) == 2
    assert api.stand_in.accounts[user.account_id].held["BRL"] == Decimal("3812.00")
