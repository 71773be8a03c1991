"""Test helpers for the API's integration tests: an isolated namespace, the app run with its
lifespan, and a stand-in for the accounts agent.

:class:`StandInAccountsAgent` is a test double, not the broker: it reads ``account-commands-v1``
and answers each request on ``account-events-v1`` with the decision the real agent would give in
the simple cases these tests need (cash and holds per currency, shares, known order ids), so the
API's request/decision path can be tested before and apart from the Faust agent. End-to-end
tests run the real agent instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from brokerflow.api import create_app
from brokerflow.kafka_io import consumer, producer
from brokerflow.projections import run_projector
from brokerflow.schemas import decode
from brokerflow.schemas.accounts import (
    DepositCash,
    OpenAccount,
    RequestAccepted,
    RequestAmend,
    RequestCancel,
    RequestOrder,
    RequestRefused,
    TransferCustody,
    WithdrawCash,
)
from brokerflow.schemas.base import Message
from brokerflow.schemas.orders import Side
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

from .exchange_workers import IsolatedExchange, isolated_exchange, stop

PASSWORD = "correct-horse-42"
LIMIT_BUY = {"symbol": "PETR4", "side": "BUY", "type": "LIMIT", "quantity": "100", "price": "38.12"}


def api_settings(settings: Settings, unique: str, **overrides: Any) -> Settings:
    """Settings whose topics, Mongo database and Redis keys belong to this test alone."""
    values: dict[str, Any] = {
        "topic_prefix": f"test-{unique}.",
        "mongo_database": f"test_{unique}",  # the `mongo_db` fixture's database: dropped after
        "stats_redis_prefix": f"test-{unique}:",
        "api_redis_prefix": f"test-{unique}:api:",
        "api_jwt_secret": secrets.token_urlsafe(48),
        "api_rate_limit": "1000/second",
        "topic_partitions": 3,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


async def delete_redis_keys(settings: Settings, unique: str) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"test-{unique}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def set_last_price(settings: Settings, symbol: str, price: str) -> None:
    """Write the market cache as the stats flow does."""
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.hset(f"{settings.stats_redis_prefix}market:last_price", symbol, price)
    finally:
        await redis.aclose()


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real ASGI app with its lifespan run, and a client that talks to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield app, client


@dataclass
class User:
    username: str
    user_id: str
    account_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(client: httpx.AsyncClient, username: str) -> User:
    created = await client.post("/api/v1/users", json={"username": username, "password": PASSWORD})
    assert created.status_code == 201, created.text
    token = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text
    body = created.json()
    return User(username, body["userId"], body["accountId"], token.json()["accessToken"])


@dataclass
class Api:
    """One test's API: its settings, a client of the running app, the stand-in agent (None
    when the test runs without one) and its MongoDB database."""

    settings: Settings
    client: httpx.AsyncClient
    agent: StandInAccountsAgent | None
    db: AsyncDatabase

    @property
    def stand_in(self) -> StandInAccountsAgent:
        assert self.agent is not None
        return self.agent


@asynccontextmanager
async def api_namespace(
    settings: Settings, unique: str, db: AsyncDatabase, *, stand_in: bool = True, **overrides: Any
) -> AsyncIterator[Api]:
    """The app on an isolated namespace, with the stand-in agent answering (unless not asked);
    the Redis keys are deleted after (the topics and database by the fixtures)."""
    isolated = api_settings(settings, unique, **overrides)
    try:
        async with contextlib.AsyncExitStack() as stack:
            agent = None
            if stand_in:
                agent = await stack.enter_async_context(StandInAccountsAgent(isolated))
            _, client = await stack.enter_async_context(running_api(isolated))
            yield Api(isolated, client, agent, db)
    finally:
        await delete_redis_keys(settings, unique)  # the stack's Redis, whatever the test set


@dataclass
class LiveSystem:
    """A real exchange worker (with the accounts agent), the API on its namespace and, unless
    asked not to, the read-model projector: the broker as ``brokerflow run`` wires it."""

    api: Api
    exchange: IsolatedExchange
    worker: Any  # the worker's subprocess.Popen
    projector: asyncio.Task[Any] | None
    projector_stop: asyncio.Event

    @property
    def settings(self) -> Settings:
        return self.api.settings

    async def stop_projector(self) -> None:
        self.projector_stop.set()
        if self.projector is not None:
            await asyncio.wait_for(self.projector, 30)


@asynccontextmanager
async def live_system(
    settings: Settings,
    unique: str,
    db: AsyncDatabase,
    workdir: Any,
    prefix: str,
    *,
    projector: bool = True,
    **overrides: Any,
) -> AsyncIterator[LiveSystem]:
    """The worker uses the instrument catalog's rules (as the API's checks do) and commits every
    0.1 s; the API waits up to 20 s for a decision (the worker's start-up). On failure the
    worker's log is printed."""
    exchange = await asyncio.to_thread(
        isolated_exchange,
        settings,
        unique,
        workdir,
        prefix,
        EXCHANGE_RULES_PATH="",
        EXCHANGE_COMMIT_INTERVAL_S="0.1",
    )
    worker = exchange.start_worker("w1")
    stop_projector = asyncio.Event()
    try:
        async with api_namespace(
            settings,
            unique,
            db,
            stand_in=False,
            topic_prefix=exchange.settings.topic_prefix,
            topic_partitions=exchange.settings.topic_partitions,
            api_decision_wait_ms=20_000,
            exchange_app_id=exchange.env["EXCHANGE_APP_ID"],
            **overrides,
        ) as api:
            task = (
                asyncio.create_task(run_projector(api.settings, stop_projector))
                if projector
                else None
            )
            system = LiveSystem(api, exchange, worker, task, stop_projector)
            yield system
            await system.stop_projector()
    except BaseException:
        print(exchange.log("w1")[-6000:])
        raise
    finally:
        stop_projector.set()
        with contextlib.suppress(Exception):
            stop(worker)


async def funded_user(
    api: Api, username: str, currency: str = "BRL", amount: str = "10000.00"
) -> User:
    user = await sign_up(api.client, username)
    deposit = await api.client.post(
        "/api/v1/account/deposits", json={"currency": currency, "amount": amount}, headers=user.auth
    )
    assert deposit.status_code == 201, deposit.text
    return user


async def user_with_shares(
    api: Api, username: str, symbol: str = "PETR4", quantity: str = "300", price: str = "30.00"
) -> User:
    """A user whose shares were moved in from another custodian at ``price`` each."""
    user = await sign_up(api.client, username)
    moved = await api.client.post(
        "/api/v1/account/custody-transfers",
        json={"symbol": symbol, "quantity": quantity, "averagePrice": price},
        headers=user.auth,
    )
    assert moved.status_code in (201, 202), moved.text
    return user


# --- the stand-in accounts agent -------------------------------------------------------------


@dataclass
class _Account:
    cash: dict[str, Decimal] = field(default_factory=dict)
    held: dict[str, Decimal] = field(default_factory=dict)
    shares: dict[str, Decimal] = field(default_factory=dict)
    orders: set[str] = field(default_factory=set)

    def free(self, currency: str) -> Decimal:
        return self.cash.get(currency, Decimal(0)) - self.held.get(currency, Decimal(0))


class StandInAccountsAgent:
    """Answers account requests the simple way (no fees, LIMIT buys hold price x quantity)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        topics = catalog(settings)
        self.requests_topic = topics.account_commands.name
        self.decisions_topic = topics.account_events.name
        self.accounts: dict[str, _Account] = {}
        #: Every request read, in order.
        self.seen: list[Message] = []
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    def orders_requested(self, order_id: str) -> int:
        return sum(isinstance(r, RequestOrder) and r.order_id == order_id for r in self.seen)

    async def __aenter__(self) -> StandInAccountsAgent:
        topics = catalog(self.settings)
        await ensure_topics(self.settings, [topics.account_commands, topics.account_events])
        reader = await self._stack.enter_async_context(consumer(self.settings))
        writer = await self._stack.enter_async_context(producer(self.settings, linger_ms=0))
        while not (partitions := reader.partitions_for_topic(self.requests_topic)):
            await reader._client.force_metadata_update()  # a topic created a moment ago
        assigned = [TopicPartition(self.requests_topic, p) for p in sorted(partitions)]
        reader.assign(assigned)
        await reader.seek_to_beginning(*assigned)
        self._task = asyncio.create_task(self._run(reader, writer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stack.aclose()

    async def _run(self, reader: AIOKafkaConsumer, writer: AIOKafkaProducer) -> None:
        while True:
            batches = await reader.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    request = decode(record.value)
                    self.seen.append(request)
                    decision = self.decide(request)
                    await writer.send_and_wait(
                        self.decisions_topic, decision.to_json_bytes(), key=record.key
                    )

    def decide(self, request: Any) -> RequestAccepted | RequestRefused:
        account = self.accounts.get(request.account_id)
        refusal: tuple[str, str] | None = None
        if isinstance(request, OpenAccount):
            if account is not None:
                refusal = ("ACCOUNT_EXISTS", "already open")
            else:
                self.accounts[request.account_id] = _Account()
        elif account is None:
            refusal = ("UNKNOWN_ACCOUNT", f"no account {request.account_id}")
        elif isinstance(request, DepositCash):
            account.cash[request.currency] = account.cash.get(request.currency, 0) + request.amount
        elif isinstance(request, WithdrawCash):
            if request.amount > account.free(request.currency):
                refusal = (
                    "INSUFFICIENT_FUNDS",
                    f"withdrawable is {account.free(request.currency)}",
                )
            else:
                account.cash[request.currency] -= request.amount
        elif isinstance(request, TransferCustody):
            account.shares[request.symbol] = (
                account.shares.get(request.symbol, 0) + request.quantity
            )
        elif isinstance(request, RequestOrder):
            refusal = self._order(account, request)
        elif (
            isinstance(request, RequestCancel | RequestAmend)
            and request.order_id not in account.orders
        ):
            refusal = ("UNKNOWN_ORDER", f"no order {request.order_id}")
        common = {
            "request_id": request.request_id,
            "account_id": request.account_id,
            "command": request.type,
            "order_id": getattr(request, "order_id", None),
            "event_time": datetime.now(UTC),
        }
        if refusal is not None:
            return RequestRefused(code=refusal[0], message=refusal[1], **common)
        return RequestAccepted(**common)

    def _order(self, account: _Account, request: RequestOrder) -> tuple[str, str] | None:
        if request.order_id in account.orders:
            return ("ORDER_ID_IN_USE", f"order id {request.order_id} was used")
        account.orders.add(request.order_id)
        currency = "USDT" if request.symbol.endswith("USDT") else "BRL"
        if request.side is Side.SELL:
            if request.quantity > account.shares.get(request.symbol, Decimal(0)):
                account.orders.discard(request.order_id)
                return ("INSUFFICIENT_SHARES", f"not enough {request.symbol}")
            account.shares[request.symbol] -= request.quantity
            return None
        price = request.price or request.market_price
        if price is None:
            account.orders.discard(request.order_id)
            return ("NO_MARKET_PRICE", f"no market price for {request.symbol}")
        hold = price * request.quantity
        if hold > account.free(currency):
            account.orders.discard(request.order_id)
            return (
                "INSUFFICIENT_BUYING_POWER",
                f"buying power {currency} {account.free(currency)} is short of {hold}",
            )
        account.held[currency] = account.held.get(currency, Decimal(0)) + hold
        return None
