"""The participants service: market data and the exchange's events in, order commands out.

``python -m brokerflow.participants`` (in ``brokerflow run`` unless ``PARTICIPANTS_ENABLED`` is
false) runs one :class:`~.core.MarketMaker` per symbol (account ``{PARTICIPANTS_ACCOUNT}-mm``)
and one :class:`~.core.Taker` over all of them (``{PARTICIPANTS_ACCOUNT}-tk``). It reads, from
their ends (live prices matter, old ones do not):

* ``market.book_ticker.raw``: Binance's best bid/ask, the crypto pairs' mid;
* ``assets-market-data-v1``: Brapi's quotes, the B3 stocks' last price;
* ``order-events-v1``: the exchange's events, of which it keeps its own orders' (fills move the
  maker's inventory and leave gaps to refill).

Its commands go to ``order-commands-v1`` keyed by symbol, like the broker's, so the command log
replays them identically. A maker's ladder is also refilled every ``PARTICIPANTS_REFRESH_S``
(levels the exchange refused, e.g. outside the session, are tried again then, not at once).

The ids of the orders it may have resting are kept in Redis (``participants:resting``, behind
``API_REDIS_PREFIX``); a restarted service cancels them first, so a crash leaves no stale quote
on the book.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from redis.asyncio import Redis

from brokerflow.errors import SchemaError
from brokerflow.instruments import Instrument, load_instruments
from brokerflow.kafka_io import KafkaUnavailableError, consumer, producer, publish
from brokerflow.metrics import PARTICIPANT_COMMANDS, PARTICIPANT_INVENTORY
from brokerflow.participants.core import (
    MakerConfig,
    MarketMaker,
    Taker,
    TakerConfig,
    mid_price,
)
from brokerflow.schemas import decode
from brokerflow.schemas.base import Message
from brokerflow.schemas.market import BestBidAsk, Quote
from brokerflow.schemas.orders import (
    CancelOrder,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    TimeInForce,
)
from brokerflow.settings import Settings
from brokerflow.topics import TopicSpec, catalog, ensure_topics

__all__ = ["Participants", "participant_symbols", "run_participants"]

log = logging.getLogger(__name__)


_DONE = (OrderFilled, OrderCancelled, OrderExpired, OrderRejected)


def _lost_race(event: Message) -> bool:
    """A refused cancel or amend: the order it names is still there."""
    return isinstance(event, OrderRejected) and event.detail.startswith(
        ("CancelOrder:", "AmendOrder:")
    )


def participant_symbols(settings: Settings) -> list[Instrument]:
    """The listed instruments the participants trade: ``PARTICIPANTS_SYMBOLS``, or every
    symbol with a market feed (the Binance and Brapi symbols)."""
    instruments = load_instruments(settings)
    wanted = settings.participants_symbols or [
        *settings.binance_symbols,
        *settings.brapi_symbols,
    ]
    return [instruments[s] for s in dict.fromkeys(wanted) if s in instruments]


@dataclass
class _Market:
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None

    @property
    def mid(self) -> Decimal | None:
        return mid_price(self.bid, self.ask, self.last)


@dataclass
class Participants:
    """The makers and the taker, and what they know of the market (no I/O)."""

    settings: Settings
    session: str
    makers: dict[str, MarketMaker] = field(default_factory=dict)
    markets: dict[str, _Market] = field(default_factory=dict)
    lots: dict[str, Decimal] = field(default_factory=dict)
    taker: Taker | None = None

    def __post_init__(self) -> None:
        s = self.settings
        maker = MakerConfig(
            half_spread_bps=s.participants_half_spread_bps,
            level_step_bps=s.participants_level_step_bps,
            levels=s.participants_levels,
            notional=s.participants_level_notional,
            max_inventory_notional=s.participants_max_inventory_notional,
            requote_bps=s.participants_requote_bps,
        )
        for instrument in participant_symbols(s):
            self.makers[instrument.symbol] = MarketMaker(
                f"{s.participants_account}-mm",
                instrument.symbol,
                instrument.tick_size,
                instrument.lot_size,
                maker,
                self.session,
            )
            self.markets[instrument.symbol] = _Market()
            self.lots[instrument.symbol] = instrument.lot_size
        if s.participants_taker_orders_per_min > 0:
            self.taker = Taker(
                f"{s.participants_account}-tk",
                self.session,
                TakerConfig(
                    notional=s.participants_taker_notional, max_lots=s.participants_taker_max_lots
                ),
                seed=s.participants_seed,
            )

    def on_market(self, message: Message, now: datetime) -> list[Message]:
        symbol = getattr(message, "symbol", None)
        market = self.markets.get(symbol) if symbol is not None else None
        if market is None:
            return []
        if isinstance(message, BestBidAsk):
            market.bid, market.ask = message.bid_price, message.ask_price
        elif isinstance(message, Quote):
            market.last = message.last_price
        else:
            return []
        return self.makers[message.symbol].on_mid(market.mid, now)

    def on_event(self, message: Message, now: datetime) -> list[Message]:
        maker = self.makers.get(getattr(message, "symbol", ""))
        if maker is None or not maker.on_event(message):
            return []
        PARTICIPANT_INVENTORY.labels(symbol=maker.symbol).set(float(maker.inventory))
        return maker.refill(now)

    def refresh(self, now: datetime) -> list[Message]:
        return [command for maker in self.makers.values() for command in maker.refill(now)]

    def take(self, now: datetime) -> list[Message]:
        """One marketable order on each symbol with a price."""
        if self.taker is None:
            return []
        return [
            self.taker.order(symbol, mid, self.lots[symbol], now)
            for symbol, market in self.markets.items()
            if (mid := market.mid) is not None
        ]


class _Outbox:
    """Commands to ``order-commands-v1``, their ids remembered in Redis while they may rest."""

    def __init__(self, writer: Any, topic: str, redis: Redis, key: str) -> None:
        self.writer, self.topic, self.redis, self.key = writer, topic, redis, key

    async def send(self, commands: list[Message], role: str) -> None:
        if not commands:
            return
        resting = [
            f"{c.symbol}|{c.account_id}|{c.order_id}"
            for c in commands
            if isinstance(c, PlaceOrder) and c.time_in_force is TimeInForce.GTC
        ]
        if resting:  # before the order exists, so a crash cannot leave one unknown
            await self.redis.sadd(self.key, *resting)
        await publish(self.writer, self.topic, [(c.symbol, c) for c in commands])  # type: ignore[attr-defined]
        gone = [
            f"{c.symbol}|{c.account_id}|{c.order_id}"
            for c in commands
            if isinstance(c, CancelOrder)
        ]
        if gone:
            await self.redis.srem(self.key, *gone)
        for command in commands:
            PARTICIPANT_COMMANDS.labels(role=role, command=command.type).inc()

    async def forget(self, members: list[str]) -> None:
        """Orders that are over (filled, cancelled, expired, refused): no longer resting."""
        await self.redis.srem(self.key, *members)

    async def cancel_leftovers(self, now: datetime) -> int:
        """Cancel every order a previous run may have left resting."""
        members = [m.decode() for m in await self.redis.smembers(self.key)]
        cancels: list[Message] = []
        for member in members:
            symbol, account_id, order_id = member.split("|", 2)
            cancels.append(
                CancelOrder(
                    order_id=order_id,
                    account_id=account_id,
                    symbol=symbol,
                    event_time=now,
                )
            )
        await self.send(cancels, "restart")
        return len(cancels)


async def _tail(reader: Any, specs: list[TopicSpec]) -> None:
    """Assign every partition of these topics and start at their ends."""
    partitions = [
        TopicPartition(spec.name, index) for spec in specs for index in range(spec.partitions)
    ]
    reader.assign(partitions)
    await reader.seek_to_end(*partitions)


async def run_participants(settings: Settings, stop: asyncio.Event) -> None:
    """Quote and take until ``stop`` is set."""
    if not settings.participants_enabled:
        log.info("participants: PARTICIPANTS_ENABLED is false; nothing to do")
        return
    topics = catalog(settings)
    try:
        await ensure_topics(
            settings,
            [
                topics.market_book_ticker,
                topics.market_quotes,
                topics.order_events,
                topics.order_commands,
            ],
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnavailableError(settings.kafka_bootstrap_servers, exc) from exc
    session = datetime.now(UTC).strftime("%y%m%d%H%M%S%f")  # a restart never reuses an id
    state = Participants(settings, session)
    redis = Redis.from_url(settings.redis_url)
    try:
        async with (
            consumer(settings) as reader,
            producer(settings, enable_idempotence=True, acks="all", linger_ms=5) as writer,
        ):
            await _tail(
                reader, [topics.market_book_ticker, topics.market_quotes, topics.order_events]
            )
            outbox = _Outbox(
                writer,
                topics.order_commands.name,
                redis,
                f"{settings.api_redis_prefix}participants:resting",
            )
            cancelled = await outbox.cancel_leftovers(datetime.now(UTC))
            log.info(
                "participants: %d makers (%s), taker at %g orders/min a symbol; "
                "%d leftover orders cancelled",
                len(state.makers),
                ", ".join(state.makers),
                settings.participants_taker_orders_per_min if state.taker else 0,
                cancelled,
            )
            take_every = (
                60 / settings.participants_taker_orders_per_min if state.taker else float("inf")
            )
            next_take = time.monotonic() + take_every
            next_refresh = time.monotonic() + settings.participants_refresh_s
            own = f"{settings.participants_account}-"
            while not stop.is_set():
                fetched = await reader.getmany(timeout_ms=100, max_records=1000)
                now = datetime.now(UTC)
                commands: list[Message] = []
                done: list[str] = []
                for batch in fetched.values():
                    for record in batch:
                        is_event = record.topic == topics.order_events.name
                        if is_event and own.encode() not in record.value:
                            continue  # someone else's order
                        try:
                            message = decode(record.value)
                        except SchemaError:
                            continue  # the producer's to dead-letter; not ours to judge
                        if is_event:
                            commands += state.on_event(message, now)
                            if isinstance(message, _DONE) and not _lost_race(message):
                                done.append(
                                    f"{message.symbol}|{message.account_id}|{message.order_id}"
                                )
                        else:
                            commands += state.on_market(message, now)
                if time.monotonic() >= next_refresh:
                    commands += state.refresh(now)
                    next_refresh = time.monotonic() + settings.participants_refresh_s
                await outbox.send(commands, "maker")
                if done:
                    await outbox.forget(done)
                if time.monotonic() >= next_take:
                    await outbox.send(state.take(now), "taker")
                    next_take += take_every
                    next_take = max(next_take, time.monotonic())
    finally:
        await redis.aclose()
