"""Trades printed by the exchange's matching engine, on ``trade-executions-v1``.

One message per match. The price is the resting (maker) order's price; ``sequence`` is the
per-symbol event sequence shared with order events, so a consumer can merge both streams in the
order the engine produced them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from brokerflow.schemas.base import Message, PositiveDecimal, Symbol, UtcDatetime
from brokerflow.schemas.orders import Side

__all__ = ["TradeExecuted"]

Id = Annotated[str, Field(min_length=1, max_length=64)]


class TradeExecuted(Message):
    type: Literal["TradeExecuted"] = "TradeExecuted"
    trade_id: Id
    symbol: Symbol
    sequence: int = Field(ge=0)
    price: PositiveDecimal
    quantity: PositiveDecimal
    #: The side of the incoming (taker) order.
    aggressor_side: Side
    taker_order_id: Id
    maker_order_id: Id
    buy_order_id: Id
    sell_order_id: Id
    buy_account_id: Id | None = None
    sell_account_id: Id | None = None
    event_time: UtcDatetime
