"""``forward_reference_prices`` and ``forward_quote_prices``: market prices into the command log.

The exchange bands limit orders around a reference price: the symbol's last trade on the
exchange, or the last market price the market-data pipeline published. These agents bring the
second kind in:

* ``forward_reference_prices`` reads normalized ``Trade`` records from ``market.trades.raw``
  (Binance trades, keyed by symbol);
* ``forward_quote_prices`` reads normalized ``Quote`` records from ``assets-market-data-v1``
  (Brapi's B3 quotes, keyed by asset), whose ``lastPrice`` is the B3 stocks' market price.

Each publishes a ``SetReferencePrice`` command for the symbol to ``order-commands-v1``, keyed by
symbol, when the price changed and at most once per ``EXCHANGE_REFERENCE_MIN_INTERVAL_S`` of
market event time (:class:`~brokerflow.exchange_schedule.ReferenceThrottle`, one per source). The
matching agent then sees prices in the same ordered log as orders, so price bands replay
deterministically. A record that does not decode as the expected type is skipped and counted (the
market-data flows dead-letter bad vendor input upstream; this is not their owner).

Sends go into the source partition's transaction under the same step lock as the matching agent
(see :mod:`brokerflow.agents.match_orders`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from faust.types import StreamT

from brokerflow.agents.match_orders import (
    InputRecord,
    install_commit_guard,
    send_in_transaction,
    step_lock,
)
from brokerflow.app import app, settings
from brokerflow.exchange_schedule import ReferenceThrottle
from brokerflow.schemas import Quote, SchemaError, SetReferencePrice, Trade, decode
from brokerflow.topics import TopicSpec, catalog

__all__ = [
    "forward_quote_prices",
    "forward_reference_prices",
    "market_quotes_topic",
    "market_trades_topic",
]

log = logging.getLogger(__name__)

topics = catalog(settings)


def _raw_topic(spec: TopicSpec) -> Any:
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
    )


market_trades_topic = _raw_topic(topics.market_trades)
market_quotes_topic = _raw_topic(topics.market_quotes)
_COMMANDS_TOPIC = topics.order_commands.name
_INTERVAL = timedelta(seconds=settings.exchange_reference_min_interval_s)

throttle = ReferenceThrottle(_INTERVAL)
quote_throttle = ReferenceThrottle(_INTERVAL)
skipped = 0


async def _forward(
    stream: StreamT, kind: type, price_of: Callable[[Any], Decimal], gate: ReferenceThrottle
) -> None:
    global skipped
    install_commit_guard()
    async for event in stream.events():
        async with step_lock:
            try:
                record = decode(event.message.value)
            except SchemaError as exc:
                record = None
                skipped += 1
                log.warning("not a %s at %s: %s", kind.__name__, event.message.tp, exc)
            if isinstance(record, kind) and gate.should_forward(
                record.symbol, price_of(record), record.event_time
            ):
                command = SetReferencePrice(
                    symbol=record.symbol,
                    price=price_of(record),
                    source=str(record.venue),
                    event_time=record.event_time,
                )
                await send_in_transaction(
                    InputRecord.of(event),
                    _COMMANDS_TOPIC,
                    record.symbol.encode(),
                    command.to_json_bytes(),
                )
            event.ack()


@app.agent(market_trades_topic, concurrency=1)
async def forward_reference_prices(stream: StreamT) -> None:
    await _forward(stream, Trade, lambda trade: trade.price, throttle)


@app.agent(market_quotes_topic, concurrency=1)
async def forward_quote_prices(stream: StreamT) -> None:
    await _forward(stream, Quote, lambda quote: quote.last_price, quote_throttle)
