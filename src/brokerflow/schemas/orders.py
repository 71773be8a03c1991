"""Order commands (broker -> exchange) and order events (exchange -> everyone).

Commands are imperative (``PlaceOrder``, ``CancelOrder``, ``AmendOrder``, and the exchange's own
``CloseSession`` and ``SetReferencePrice``) and travel on ``order-commands-v1``; events are past
tense and travel on ``order-events-v1`` (the seed's name). Event names follow the order state
machine in :mod:`brokerflow.order_state`::

    PENDING -> OPEN -> PARTIALLY_FILLED -> FILLED
    PENDING -> REJECTED    OPEN/PARTIALLY_FILLED -> CANCELLED | EXPIRED

Field names follow the seed's REST body (``symbol``, ``side``, ``type`` -> ``orderType`` here,
because ``type`` names the message, ``quantity``, ``price``, ``idempotencyKey``).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from brokerflow.schemas.base import (
    Message,
    NonNegativeDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
    invalid_field,
)

__all__ = [
    "AmendOrder",
    "CancelOrder",
    "CloseSession",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderCommand",
    "OrderDuplicateIgnored",
    "OrderEvent",
    "OrderExpired",
    "OrderFilled",
    "OrderPartiallyFilled",
    "OrderRejected",
    "OrderStatus",
    "OrderSubmitted",
    "OrderType",
    "PlaceOrder",
    "SetReferencePrice",
    "Side",
    "TimeInForce",
    "check_price_matches_type",
]

Id = Annotated[str, Field(min_length=1, max_length=64)]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till cancelled
    DAY = "DAY"  # expires at the venue's session close
    IOC = "IOC"  # immediate or cancel: fill what crosses now, cancel the rest
    FOK = "FOK"  # fill or kill: all at once or nothing


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


# --- commands ------------------------------------------------------------------------------


def check_price_matches_type(order_type: OrderType, price: object) -> None:
    """A LIMIT order needs a price, a MARKET order takes none (for the models' validators)."""
    if order_type is OrderType.LIMIT and price is None:
        raise invalid_field("price", "a LIMIT order needs a price")
    if order_type is OrderType.MARKET and price is not None:
        raise invalid_field("price", "a MARKET order takes no price (send null)", price)


class PlaceOrder(Message):
    type: Literal["PlaceOrder"] = "PlaceOrder"
    order_id: Id
    account_id: Id
    symbol: Symbol
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.GTC
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None
    idempotency_key: Id | None = None
    #: When the broker accepted the request: the exchange's deterministic clock for this order.
    event_time: UtcDatetime

    @model_validator(mode="after")
    def _price_matches_type(self) -> PlaceOrder:
        check_price_matches_type(self.order_type, self.price)
        return self


class CancelOrder(Message):
    type: Literal["CancelOrder"] = "CancelOrder"
    order_id: Id
    account_id: Id | None = None
    symbol: Symbol
    event_time: UtcDatetime


class AmendOrder(Message):
    """Quantity down keeps time priority; a new price or more quantity re-queues the order."""

    type: Literal["AmendOrder"] = "AmendOrder"
    order_id: Id
    account_id: Id | None = None
    symbol: Symbol
    quantity: PositiveDecimal | None = None
    price: PositiveDecimal | None = None
    event_time: UtcDatetime

    @model_validator(mode="after")
    def _changes_something(self) -> AmendOrder:
        if self.quantity is None and self.price is None:
            raise invalid_field("quantity", "an amend needs a new quantity, a new price, or both")
        return self


class CloseSession(Message):
    """End of a trading session for one symbol: every resting DAY order expires.

    Published by the exchange's session timer into the command topic, keyed by symbol, so the
    expiry sits in the same ordered log as the orders and a replay reproduces it. ``sessionDate``
    (the venue's local date) lets the exchange ignore a repeated close of the same session; a
    close without one (a hand-written tape) always applies.
    """

    type: Literal["CloseSession"] = "CloseSession"
    symbol: Symbol
    session_date: date | None = None
    #: The session's close instant (not the wall clock of the timer): deterministic on replay.
    event_time: UtcDatetime


class SetReferencePrice(Message):
    """The market's last price for a symbol, for the exchange's price bands. No event follows.

    Forwarded from the market-data trades topic into the command topic (throttled), so the
    matching agent sees prices in the same ordered log as orders and replays are deterministic.
    """

    type: Literal["SetReferencePrice"] = "SetReferencePrice"
    symbol: Symbol
    price: PositiveDecimal
    #: Where the price came from (``binance``, ``b3``...); informational.
    source: str | None = Field(default=None, max_length=64)
    event_time: UtcDatetime


OrderCommand = Annotated[
    PlaceOrder | CancelOrder | AmendOrder | CloseSession | SetReferencePrice,
    Field(discriminator="type"),
]


# --- events --------------------------------------------------------------------------------


class _OrderEventBase(Message):
    order_id: Id
    account_id: Id | None = None
    symbol: Symbol
    status: OrderStatus
    #: Per-symbol sequence number assigned by the exchange; gap-free, replay-stable.
    sequence: int = Field(ge=0)
    #: Quantity filled so far and still open on the book, after this event.
    filled_quantity: NonNegativeDecimal
    leaves_quantity: NonNegativeDecimal
    event_time: UtcDatetime
    receive_time: UtcDatetime | None = None


class OrderSubmitted(_OrderEventBase):
    """The broker accepted the request and held funds; not yet on the exchange (PENDING)."""

    type: Literal["OrderSubmitted"] = "OrderSubmitted"
    status: Literal[OrderStatus.PENDING] = OrderStatus.PENDING
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None
    idempotency_key: Id | None = None


class OrderAccepted(_OrderEventBase):
    type: Literal["OrderAccepted"] = "OrderAccepted"
    status: Literal[OrderStatus.OPEN] = OrderStatus.OPEN
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None


class OrderRejected(_OrderEventBase):
    type: Literal["OrderRejected"] = "OrderRejected"
    status: Literal[OrderStatus.REJECTED] = OrderStatus.REJECTED
    #: Machine-readable reason (``TICK_SIZE``, ``LOT_SIZE``, ``PRICE_BAND``,
    #: ``INSUFFICIENT_FUNDS``...).
    reason: str
    detail: str = ""


class OrderPartiallyFilled(_OrderEventBase):
    type: Literal["OrderPartiallyFilled"] = "OrderPartiallyFilled"
    status: Literal[OrderStatus.PARTIALLY_FILLED] = OrderStatus.PARTIALLY_FILLED
    trade_id: Id
    last_price: PositiveDecimal
    last_quantity: PositiveDecimal


class OrderFilled(_OrderEventBase):
    type: Literal["OrderFilled"] = "OrderFilled"
    status: Literal[OrderStatus.FILLED] = OrderStatus.FILLED
    trade_id: Id
    last_price: PositiveDecimal
    last_quantity: PositiveDecimal


class OrderCancelled(_OrderEventBase):
    type: Literal["OrderCancelled"] = "OrderCancelled"
    status: Literal[OrderStatus.CANCELLED] = OrderStatus.CANCELLED
    #: Why: ``USER``, ``IOC_REMAINDER``, ``FOK_UNFILLABLE``, ``MARKET_NO_LIQUIDITY``,
    #: ``SELF_TRADE``.
    reason: str
    cancelled_quantity: NonNegativeDecimal


class OrderExpired(_OrderEventBase):
    type: Literal["OrderExpired"] = "OrderExpired"
    status: Literal[OrderStatus.EXPIRED] = OrderStatus.EXPIRED
    expired_quantity: NonNegativeDecimal


class OrderAmended(_OrderEventBase):
    type: Literal["OrderAmended"] = "OrderAmended"
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None
    #: False when the amend moved the order to the back of its price level.
    kept_priority: bool


class OrderDuplicateIgnored(Message):
    """A command whose orderId the exchange had already processed; nothing changed."""

    type: Literal["OrderDuplicateIgnored"] = "OrderDuplicateIgnored"
    order_id: Id
    symbol: Symbol
    command: str
    sequence: int = Field(ge=0)
    event_time: UtcDatetime


OrderEvent = Annotated[
    OrderSubmitted
    | OrderAccepted
    | OrderRejected
    | OrderPartiallyFilled
    | OrderFilled
    | OrderCancelled
    | OrderExpired
    | OrderAmended
    | OrderDuplicateIgnored,
    Field(discriminator="type"),
]
