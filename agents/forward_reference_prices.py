"""Market prices into the command log: the exchange agent's market-data inputs.

The exchange bands limit orders around a reference price: the symbol's last trade on the
exchange, or the last market price the market-data pipeline published. The matching agent
(:mod:`brokerflow.agents.match_orders`) reads the market-data topics alongside the commands and
hands their records to :class:`ReferencePrices`:

* ``market.trades.raw``: normalized ``Trade`` records (Binance trades, keyed by symbol);
* ``assets-market-data-v1``: normalized ``Quote`` records (Brapi's B3 quotes, keyed by asset),
  whose ``lastPrice`` is the B3 stocks' market price.

A price becomes a ``SetReferencePrice`` command on ``order-commands-v1``, keyed by symbol, when it
changed, at most once per ``EXCHANGE_REFERENCE_MIN_INTERVAL_S`` of market event time; a changed
price that comes too soon is held and forwarded by the agent's timer once it has waited that long
(wall time), so the last price of a burst still becomes the reference
(:func:`~brokerflow.exchange.schedule.offer_price`). The matching agent then sees prices in the
same ordered log as orders, so price bands replay deterministically.

Why not read the price at matching time (from this topic or the Redis market cache): what a
command would then see depends on when it happened to be processed, so a replay could band
differently. Why in the matching agent's own consumer and transaction: the market topics are
co-partitioned with the command topic, so one worker owns partition N of all of them, and the
forwarding state (``reference_forwarding`` table) and the market offsets commit in the same
transaction as the forwarded command. A restart therefore neither forwards an unchanged price
again nor loses a held one, and a market record Faust drops at a rebalance is read back like a
command (see :mod:`brokerflow.agents.match_orders`).

A record that does not decode as the topic's type is skipped, counted and logged (the market-data
flows dead-letter bad vendor input upstream; this is not their owner).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from aiokafka import TopicPartition

from brokerflow.agents.exactly_once import (
    InputRecord,
    TableWrites,
    next_offset_key,
    next_offset_record,
    send_in_transaction,
    split_next_offsets,
)
from brokerflow.exchange.schedule import ReferenceState, offer_price, release_held
from brokerflow.schemas import Quote, SchemaError, SetReferencePrice, Trade, decode

__all__ = ["QUOTES", "TRADES", "MarketFeed", "ReferencePrices"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MarketFeed:
    """A market-data topic: the record type it carries and the price that type quotes."""

    kind: type[Trade] | type[Quote]
    price_of: Callable[[Any], Decimal]


TRADES = MarketFeed(Trade, lambda trade: trade.price)
QUOTES = MarketFeed(Quote, lambda quote: quote.last_price)


def _state_key(topic: str, symbol: str) -> bytes:
    return f"{topic}|{symbol}".encode()


class ReferencePrices:
    """The forwarding state of the market partitions this worker owns, and the steps on it.

    Called by the matching agent under its step lock, inside the source partition's transaction.
    """

    def __init__(
        self, feeds: dict[str, MarketFeed], commands_topic: str, table: Any, interval: timedelta
    ) -> None:
        self.feeds = feeds
        self.commands_topic = commands_topic
        self.table = table
        self.interval = interval
        self.states: dict[tuple[str, str], ReferenceState] = {}
        self.partition_of: dict[tuple[str, str], int] = {}
        #: (topic, symbol) -> monotonic time its current held price began waiting.
        self.held_since: dict[tuple[str, str], float] = {}
        self.skipped = 0
        self.forwarded = 0

    def clear(self) -> None:
        self.states.clear()
        self.partition_of.clear()
        self.held_since.clear()

    def restore_partition(
        self, partition: int, items: Iterable[tuple[bytes, bytes]], now: float
    ) -> dict[str, int]:
        """Load one partition's states from its table items (replacing what was held for it);
        return the next offset per market topic the items record."""
        for key in [key for key, owner in self.partition_of.items() if owner == partition]:
            del self.partition_of[key]
            self.states.pop(key, None)
            self.held_since.pop(key, None)
        next_offsets, states = split_next_offsets(items)
        for key, value in states:
            topic, _, symbol = key.decode().partition("|")
            state = ReferenceState.from_bytes(value)
            self.states[(topic, symbol)] = state
            self.partition_of[(topic, symbol)] = partition
            if state.held_price is not None:
                self.held_since[(topic, symbol)] = now  # waits one more interval from here
        return next_offsets

    async def forward(self, record: InputRecord, writes: TableWrites, now: float) -> None:
        """One market record: maybe a ``SetReferencePrice``, and the partition's next offset."""
        feed = self.feeds[record.topic]
        writes.set(
            record,
            self.table,
            next_offset_key(record.topic),
            next_offset_record(record.offset + 1),
        )
        try:
            market = decode(record.value)
        except SchemaError as exc:
            market = exc
        if not isinstance(market, feed.kind):
            self.skipped += 1
            log.warning(
                "not a %s at %s[%d]@%d (skipped, #%d): %s",
                feed.kind.__name__,
                record.topic,
                record.partition,
                record.offset,
                self.skipped,
                market if isinstance(market, SchemaError) else f"a {type(market).__name__}",
            )
            return
        key = (record.topic, market.symbol)
        state = self.states.get(key)
        price = feed.price_of(market)
        new_state, send = offer_price(
            state, str(market.venue), price, market.event_time, self.interval
        )
        if new_state == state:
            return
        self._store(record, key, new_state, writes, now)
        if send:
            await self._send(record, market.symbol, new_state)

    def due(self, now: float) -> Iterator[tuple[str, str]]:
        """Held prices that waited at least the interval (wall time)."""
        wait = self.interval.total_seconds()
        for key, since in list(self.held_since.items()):
            if now - since >= wait:
                yield key

    async def release(self, key: tuple[str, str], writes: TableWrites, now: float) -> int:
        """Forward a held price (the timer's step); returns the partition it was written in."""
        topic, symbol = key
        released = release_held(self.states[key])
        partition = self.partition_of[key]
        source = TopicPartition(topic, partition)
        if released is None:  # not held any more
            self.held_since.pop(key, None)
            return partition
        self._store(source, key, released, writes, now)
        await self._send(source, symbol, released)
        return partition

    def _store(
        self,
        source: Any,
        key: tuple[str, str],
        state: ReferenceState,
        writes: TableWrites,
        now: float,
    ) -> None:
        self.states[key] = state
        self.partition_of[key] = source.partition
        if state.held_price is None:
            self.held_since.pop(key, None)
        else:
            self.held_since.setdefault(key, now)
        writes.set(source, self.table, _state_key(*key), state.to_bytes())

    async def _send(self, source: Any, symbol: str, state: ReferenceState) -> None:
        command = SetReferencePrice(
            symbol=symbol, price=state.price, source=state.source, event_time=state.event_time
        )
        send_in_transaction(source, self.commands_topic, symbol.encode(), command.to_json_bytes())
        self.forwarded += 1
