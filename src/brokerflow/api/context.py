"""What a request handler needs (Kafka, MongoDB, Redis, the broker's rules), opened and closed
by the app's lifespan, with every I/O call bounded by ``API_IO_TIMEOUT_MS``.

The API starts even when a service is down, so that it can say so: a request that needs Kafka,
MongoDB or Redis while it is unreachable gets a 503 naming the servers and what to run, within
the timeout, never a hang. Kafka (the producer and the decision reader) is connected at start-up
and, failing that, again every few seconds in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from brokerflow.api.decisions import Decision, DecisionWaiter, close_quietly
from brokerflow.api.errors import ApiError, unavailable
from brokerflow.api.idempotency import IdempotencyStore
from brokerflow.api.ratelimit import UserRateLimiter
from brokerflow.api.security import Passwords, TokenCodec, load_jwt_secret
from brokerflow.kafka_io import KafkaUnavailableError, producer
from brokerflow.projections.cache import OPEN_STATUSES, OpenOrdersCache, PortfolioCache
from brokerflow.schemas.accounts import AccountCommand
from brokerflow.schemas.base import Message
from brokerflow.settings import Settings
from brokerflow.topics import TopicCatalog, catalog, ensure_topics

if TYPE_CHECKING:
    from brokerflow.broker import BrokerRules

__all__ = ["ApiContext", "KafkaLink"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: An account's ``accounts`` document (None before it exists) and its positions.
Portfolio = tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]

USERS = "users"
ORDERS = "orders"
ACCOUNTS = "accounts"
POSITIONS = "positions"

_RECONNECT_S = 3.0
#: How long past the driver's own timeout a MongoDB call may take before the request gives up.
_MONGO_BACKSTOP_S = 1.0


def _forget(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a call nobody waits for any more (no "never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


class KafkaLink:
    """The API's producer and :class:`DecisionWaiter`, connected together or not at all."""

    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.waiter = DecisionWaiter(settings, timeout_s=timeout_s)
        self._producer: AIOKafkaProducer | None = None
        self._stack: AsyncExitStack | None = None
        self._retry: asyncio.Task[None] | None = None
        self.last_error: str = "not connected yet"

    @property
    def servers(self) -> str:
        return self.settings.kafka_bootstrap_servers

    async def start(self) -> None:
        """Connect now if Kafka answers; otherwise keep trying in the background."""
        if not await self._connect():
            self._retry = asyncio.create_task(self._reconnect(), name="kafka-reconnect")

    async def _connect(self) -> bool:
        stack = AsyncExitStack()
        topics = catalog(self.settings)
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                await ensure_topics(
                    self.settings,
                    [topics.account_commands, topics.account_events, topics.alert_commands],
                    timeout_s=self.timeout_s,
                )
            client = await stack.enter_async_context(
                # A person waits on every send: no linger. Idempotent: a retried send is
                # written once.
                producer(
                    self.settings,
                    timeout_s=self.timeout_s,
                    linger_ms=0,
                    enable_idempotence=True,
                    acks="all",
                )
            )
            await self.waiter.start()
            stack.push_async_callback(self.waiter.stop)
        except Exception as exc:
            await close_quietly(stack, "API producer")
            # KafkaUnavailableError already says "Kafka at ... is unavailable": keep its cause.
            cause = exc.__cause__ if isinstance(exc, KafkaUnavailableError) else None
            self.last_error = _short(cause or exc)
            log.warning("API: Kafka at %s not reachable: %s", self.servers, self.last_error)
            return False
        self._producer, self._stack = client, stack
        log.info("API: connected to Kafka at %s", self.servers)
        return True

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(_RECONNECT_S)
            if await self._connect():
                return

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self._stack is not None:
            await close_quietly(self._stack, "API producer")
        self._producer = self._stack = None

    def require(self) -> None:
        """503 now if Kafka is not connected (a request must not even start)."""
        if self._producer is None or not self.waiter.running:
            raise unavailable("Kafka", self.servers, self.last_error)

    async def publish(self, topic: str, key: str, message: AccountCommand | Message) -> None:
        """Send and wait for the broker's ack, at most ``timeout_s``; 503 otherwise."""
        self.require()
        assert self._producer is not None
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(topic, message.to_json_bytes(), key=key.encode()),
                timeout=self.timeout_s,
            )
        except (TimeoutError, KafkaUnavailableError, OSError) as exc:
            raise unavailable("Kafka", self.servers, f"no ack within {self.timeout_s:g} s") from exc
        except Exception as exc:  # aiokafka's KafkaError family
            raise unavailable("Kafka", self.servers, _short(exc)) from exc


@dataclass
class ApiContext:
    """Everything handlers share, built by :meth:`open` and closed by :meth:`close`."""

    settings: Settings
    rules: BrokerRules
    topics: TopicCatalog
    kafka: KafkaLink
    mongo: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    redis: Redis
    limiter: UserRateLimiter
    idempotency: IdempotencyStore
    tokens: TokenCodec
    passwords: Passwords
    portfolio_cache: PortfolioCache
    open_orders_cache: OpenOrdersCache
    _indexes_ready: bool = False

    @property
    def timeout_s(self) -> float:
        return self.settings.api_io_timeout_ms / 1000

    @classmethod
    async def open(cls, settings: Settings, rules: BrokerRules) -> ApiContext:
        timeout_s = settings.api_io_timeout_ms / 1000
        timeout_ms = settings.api_io_timeout_ms
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongo_url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            timeoutMS=timeout_ms,
            tz_aware=True,
        )
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            decode_responses=False,
        )
        context = cls(
            settings=settings,
            rules=rules,
            topics=catalog(settings),
            kafka=KafkaLink(settings, timeout_s),
            mongo=mongo,
            db=mongo[settings.mongo_database],
            redis=redis,
            limiter=UserRateLimiter(
                redis, settings.redis_url, settings.api_rate_limit, settings.api_redis_prefix
            ),
            idempotency=IdempotencyStore(
                redis, settings.api_redis_prefix, settings.api_idempotency_ttl_s
            ),
            tokens=TokenCodec(load_jwt_secret(settings), settings.api_token_ttl_s),
            passwords=Passwords(),
            portfolio_cache=PortfolioCache(
                redis, settings.api_redis_prefix, settings.api_cache_ttl_s
            ),
            open_orders_cache=OpenOrdersCache(
                redis, settings.api_redis_prefix, settings.api_cache_ttl_s
            ),
        )
        await context.kafka.start()
        try:
            await context.ensure_indexes()
        except ApiError as exc:  # created on first use instead
            log.warning("API: %s", exc.message)
        return context

    async def close(self) -> None:
        await self.kafka.stop()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        with contextlib.suppress(Exception):
            await self.mongo.close()

    # --- bounded I/O ------------------------------------------------------------------------

    async def mongo_op(self, operation: Awaitable[T]) -> T:
        """Await a MongoDB call; 503 if MongoDB fails or does not answer in time.

        The driver bounds the call itself (``timeoutMS`` = the I/O timeout). The call is never
        cancelled from outside: pymongo's async pool breaks its own lock when a task waiting for
        a connection is cancelled (every later request then fails with "Lock is not acquired";
        seen at 200 orders/s). So it runs shielded, and a request that gives up (our backstop,
        or the client leaving) leaves it to finish or time out inside the driver.

        A DuplicateKeyError passes through: it is an answer, not an outage."""
        task = asyncio.ensure_future(operation)
        try:
            async with asyncio.timeout(self.timeout_s + _MONGO_BACKSTOP_S):
                return await asyncio.shield(task)
        except DuplicateKeyError:
            raise
        except (PyMongoError, TimeoutError, OSError) as exc:
            raise unavailable("MongoDB", self.settings.mongo_url, _short(exc)) from exc
        finally:
            if not task.done():
                task.add_done_callback(_forget)

    async def redis_op(self, operation: Awaitable[T]) -> T:
        """Await a Redis call for at most the I/O timeout; 503 if Redis fails."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await operation
        except (RedisError, TimeoutError, OSError) as exc:
            raise unavailable("Redis", self.settings.redis_url, _short(exc)) from exc
        except Exception as exc:  # limits wraps some storage errors in its own types
            if type(exc).__module__.startswith(("limits", "redis")):
                raise unavailable("Redis", self.settings.redis_url, _short(exc)) from exc
            raise

    async def ensure_indexes(self) -> None:
        """The unique username index (the rule that makes signups race-free)."""
        if self._indexes_ready:
            return
        await self.mongo_op(self.db[USERS].create_index("username", unique=True))
        self._indexes_ready = True

    # --- Kafka ------------------------------------------------------------------------------

    async def request(self, message: AccountCommand, *, wait: bool = True) -> Decision | None:
        """Publish an account request and wait up to API_DECISION_WAIT_MS for its decision.

        The waiter is registered before the send, so a decision cannot slip past it."""
        topic = self.topics.account_commands.name
        if not wait:
            await self.kafka.publish(topic, message.account_id, message)
            return None
        self.kafka.require()
        waiting = self.kafka.waiter.expect(message.request_id)
        try:
            await self.kafka.publish(topic, message.account_id, message)
        except BaseException:
            self.kafka.waiter.forget(waiting)
            raise
        return await self.kafka.waiter.wait(waiting, self.settings.api_decision_wait_ms / 1000)

    # --- market cache -----------------------------------------------------------------------

    @property
    def last_price_key(self) -> str:
        """The stats flow's hash of last prices (the market cache the exchange reads too)."""
        return f"{self.settings.stats_redis_prefix}market:last_price"

    async def _cache_aside(
        self,
        what: str,
        read: Callable[[], Awaitable[T | None]],
        load: Callable[[], Awaitable[T]],
        fill: Callable[[T], Awaitable[None]],
    ) -> T:
        """From the Redis cache when it holds a complete answer, else from MongoDB (then
        merged into the cache for the next read). A Redis failure here is not an outage: the
        read falls back to MongoDB, and does not try to fill a cache it could not read."""
        try:
            async with asyncio.timeout(self.timeout_s):
                cached = await read()
        except (RedisError, TimeoutError, OSError, ValueError) as exc:
            log.warning("API: %s cache unreadable (%s); reading MongoDB", what, _short(exc))
            cached, cache_ok = None, False
        else:
            cache_ok = True
        if cached is not None:
            return cached
        loaded = await load()
        if cache_ok:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await fill(loaded)
            except (RedisError, TimeoutError, OSError) as exc:
                log.warning("API: %s cache not filled (%s)", what, _short(exc))
        return loaded

    async def portfolio_documents(self, account_id: str) -> Portfolio:
        """The account's ``accounts`` document and positions (see :meth:`_cache_aside`)."""
        cache = self.portfolio_cache

        async def read() -> Portfolio | None:
            cached = await cache.read(account_id)
            return None if cached is None else (cached.account, list(cached.positions))

        async def load() -> Portfolio:
            account = await self.mongo_op(self.db[ACCOUNTS].find_one({"_id": account_id}))
            cursor = self.db[POSITIONS].find({"accountId": account_id})
            return account, list(await self.mongo_op(cursor.to_list(length=10_000)))

        async def fill(found: Portfolio) -> None:
            await cache.merge(account_id, found[0], found[1], complete=True)

        return await self._cache_aside("portfolio", read, load, fill)

    async def open_orders(self, account_id: str) -> list[Mapping[str, Any]]:
        """The account's open orders (see :meth:`_cache_aside`)."""
        cache = self.open_orders_cache
        query = {"accountId": account_id, "status": {"$in": sorted(OPEN_STATUSES)}}

        async def read() -> list[Mapping[str, Any]] | None:
            return await cache.read(account_id)

        async def load() -> list[Mapping[str, Any]]:
            return list(await self.mongo_op(self.db[ORDERS].find(query).to_list(length=100_000)))

        async def fill(found: list[Mapping[str, Any]]) -> None:
            await cache.merge(account_id, found, complete=True)

        return await self._cache_aside("open-orders", read, load, fill)

    async def remember_order(self, document: Mapping[str, Any]) -> None:
        """A new order into the open-orders cache (best effort: a cold read finds it too)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.open_orders_cache.merge(
                    str(document["accountId"]), [document], complete=False
                )
        except (RedisError, TimeoutError, OSError) as exc:
            log.warning("API: open-orders cache not written (%s)", _short(exc))

    async def last_prices(self, symbols: list[str]) -> Mapping[str, Decimal]:
        """Last market price per symbol; symbols with none (or an unreadable one) are absent."""
        if not symbols:
            return {}
        values = await self.redis_op(self.redis.hmget(self.last_price_key, symbols))
        prices: dict[str, Decimal] = {}
        for symbol, raw in zip(symbols, values, strict=True):
            if raw is None:
                continue
            try:
                price = Decimal(raw.decode() if isinstance(raw, bytes) else str(raw))
            except (InvalidOperation, UnicodeDecodeError):
                continue
            if price.is_finite() and price > 0:
                prices[symbol] = price
        return prices
