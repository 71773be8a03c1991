"""``forward_reference_prices``: last trade prices from market data into the command log.

Reads normalized ``Trade`` records from ``market.trades.raw`` (keyed by symbol) and publishes a
``SetReferencePrice`` command for the symbol to ``order-commands-v1``, keyed by symbol, when the
price changed and at most once per ``EXCHANGE_REFERENCE_MIN_INTERVAL_S`` of trade event time
(:class:`~brokerflow.exchange_schedule.ReferenceThrottle`). The matching agent then sees prices in
the same ordered log as orders, so price bands replay deterministically. A record that does not
decode as a ``Trade`` is skipped and counted (the market-data flows dead-letter bad vendor input
upstream; this is not their owner).

Sends go into the source partition's transaction under the same step lock as the matching agent
(see :mod:`brokerflow.agents.match_orders`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from faust.types import StreamT

from brokerflow.agents.match_orders import (
    InputRecord,
    install_commit_guard,
    send_in_transaction,
    step_lock,
)
from brokerflow.app import app, settings
from brokerflow.exchange_schedule import ReferenceThrottle
from brokerflow.schemas import SchemaError, SetReferencePrice, Trade, decode
from brokerflow.topics import catalog

__all__ = ["forward_reference_prices", "market_trades_topic"]

log = logging.getLogger(__name__)

topics = catalog(settings)
market_trades_topic = app.topic(
    topics.market_trades.name,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=topics.market_trades.partitions,
)
_COMMANDS_TOPIC = topics.order_commands.name

throttle = ReferenceThrottle(timedelta(seconds=settings.exchange_reference_min_interval_s))
skipped = 0


@app.agent(market_trades_topic, concurrency=1)
async def forward_reference_prices(stream: StreamT) -> None:
    global skipped
    install_commit_guard()
    async for event in stream.events():
        async with step_lock:
            try:
                trade = decode(event.message.value)
            except SchemaError as exc:
                trade = None
                skipped += 1
                log.warning("not a Trade at %s: %s", event.message.tp, exc)
            if isinstance(trade, Trade) and throttle.should_forward(
                trade.symbol, trade.price, trade.event_time
            ):
                command = SetReferencePrice(
                    symbol=trade.symbol,
                    price=trade.price,
                    source=str(trade.venue),
                    event_time=trade.event_time,
                )
                await send_in_transaction(
                    InputRecord.of(event),
                    _COMMANDS_TOPIC,
                    trade.symbol.encode(),
                    command.to_json_bytes(),
                )
            event.ack()
